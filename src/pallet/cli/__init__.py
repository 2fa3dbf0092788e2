"""The `pallet` command: an HTTP client of the REST API, plus the few commands that run
servers or open the database directly (serve, api, worker, db, admin)."""
