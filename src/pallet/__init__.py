"""Pallet: a content repository server."""

__version__ = "0.1.0"
