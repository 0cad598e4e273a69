"""Adapters from ``ImageResult`` to the formats people use. Each writes atomically."""
