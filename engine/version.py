"""The engine's version, recorded in metadata and archives."""

__version__ = "0.1.0"
