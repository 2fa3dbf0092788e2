"""Tasks of distributions (being built)."""
