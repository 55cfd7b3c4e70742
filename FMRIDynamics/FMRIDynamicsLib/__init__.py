"""FMRIDynamicsLib."""
