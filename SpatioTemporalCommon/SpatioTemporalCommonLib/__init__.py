"""SpatioTemporalCommonLib."""
