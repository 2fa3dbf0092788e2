"""Tasks of remotes (being built)."""
