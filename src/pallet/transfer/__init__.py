"""Moving exact repository versions between servers: the archive format, export and import."""
