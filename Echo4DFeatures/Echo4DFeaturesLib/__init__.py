"""Echo4DFeaturesLib."""
