"""SpatioTemporalCommonLib: plumbing shared by the SlicerSpatioTemporal modules.

Headless application context, 4D series <-> MRML conversion with geometry and frame times, result
nodes, file I/O through Slicer's storage nodes, input validation, progress/cancel, and the
``spatiotemporal`` command line.
"""

__version__ = "0.1.0"
