"""The species classifier's toolchain: crops datasets, training, export, evaluation and INT8 for crop classifiers.

The runtime side is ``andi_edge.runtime.classifier``: crops here are cut and preprocessed by its functions, so a
classifier sees in training exactly what it sees on the device.
"""
