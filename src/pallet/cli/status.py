"""`pallet status`: is the server up, which version, which database, how many workers."""

from __future__ import annotations

from typing import Annotated

import typer

from pallet.cli.client import connect
from pallet.cli.output import JsonFlag, emit_json, record, table

FIELDS = ["version", "database", "schema_revision", "schema_current", "workers",
          "content_types", "repository_types"]


def status(workers: Annotated[bool, typer.Option(
               "--workers", help="Also list the worker processes and their last heartbeat "
                                 "(needs a login).")] = False,
           as_json: JsonFlag = False) -> None:
    """Show the server's status (needs no login)."""
    api = connect()
    answer = api.get("status")
    listing = api.get("workers") if workers else None
    if as_json:
        emit_json(answer if listing is None else {"status": answer, "workers": listing})
        return
    record(answer, FIELDS)
    if listing is not None:
        table(listing, ["name", "started_at", "heartbeat_at"])


def register(app: typer.Typer) -> None:
    app.command("status")(status)
