"""Tasks of publications (being built)."""
