"""Background work: a database-backed queue with resource locks, run by workers."""
