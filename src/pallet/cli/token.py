"""`pallet token ...`: API tokens of the logged-in user."""

from __future__ import annotations

from typing import Annotated

import typer

from pallet.cli.client import connect, path
from pallet.cli.output import JsonFlag, deleted, emit_json, note, show_page, show_record

app = typer.Typer(help="Your API tokens: for scripts, instead of a password.",
                  no_args_is_help=True)

COLUMNS = ["id", "name", "created_at", "expires_at"]


@app.command("create")
def create(name: Annotated[str, typer.Argument(help="What the token is for.")],
           expires_in_days: Annotated[int | None, typer.Option(
               min=1, help="The token stops working after this many days (default: never).")
           ] = None,
           as_json: JsonFlag = False) -> None:
    """Create a token carrying your roles; it is shown this once."""
    token = connect().post("tokens", {"name": name, "expires_in_days": expires_in_days})
    show_record(token, COLUMNS + ["token"], as_json=as_json)
    if not as_json:
        note("keep the token now: Pallet stores only its hash and cannot show it again "
             "(use it as PALLET_TOKEN)")


@app.command("list")
def list_tokens(as_json: JsonFlag = False) -> None:
    """List your tokens (not their secret values)."""
    tokens = connect().get("tokens")
    if as_json:
        emit_json(tokens)
    else:
        show_page({"count": len(tokens), "results": tokens}, COLUMNS, as_json=False,
                  noun="token")


@app.command("delete")
def delete(token_id: Annotated[int, typer.Argument(help="The token's id.")],
           as_json: JsonFlag = False) -> None:
    """Delete one of your tokens; it stops working at once."""
    href = path("tokens", token_id)
    connect().delete(href)
    deleted(f"token {token_id}", f"/api/v1/{href}", as_json=as_json)
