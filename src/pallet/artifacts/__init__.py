"""Artifacts: bytes identified by their sha256, stored once."""
