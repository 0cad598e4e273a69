"""andi-edge: an edge inference runtime for camera traps.

Importing this package does no work: no model is loaded, no file is read, no network is touched.
"""

__version__ = "0.1.0"
