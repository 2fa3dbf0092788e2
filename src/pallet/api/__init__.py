"""The REST API under /api/v1: app factory, shared dependencies, errors and pagination."""
