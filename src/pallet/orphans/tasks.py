"""Tasks of orphans (being built)."""
