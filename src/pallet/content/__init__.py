"""Content units: typed items with a natural key, linking artifacts by relative path."""
