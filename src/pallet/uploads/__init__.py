"""Chunked, parallel, resumable uploads that become artifacts."""
