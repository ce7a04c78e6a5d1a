"""CellBridge: deep-learning cell detection for QuPath, the Python side."""

__version__ = "0.1.0"
