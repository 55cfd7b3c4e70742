"""TumorSegmentation4DLib."""
