"""DCEKineticsLib."""
