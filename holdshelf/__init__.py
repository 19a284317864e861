"""Holdshelf: a self-service hold shelf that does not tell passers-by who reads what."""

__version__ = "0.1.0"
