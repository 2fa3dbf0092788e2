"""Repositories and their immutable, numbered versions."""
