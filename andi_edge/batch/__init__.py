"""Back-processing whole archives: ``andi-edge batch`` on this machine's cores or on a Ray cluster."""
