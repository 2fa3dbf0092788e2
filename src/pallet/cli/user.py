"""`pallet user ...`: accounts on the server (admins only, except `whoami`)."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from pallet.cli.admin import read_password
from pallet.cli.client import Limit, Offset, connect, path
from pallet.cli.output import JsonFlag, deleted, fail, show_page, show_record

app = typer.Typer(help="Users and their roles (admin, viewer, exporter, importer).",
                  no_args_is_help=True)

Username = Annotated[str, typer.Argument(help="The user's name.")]
Roles = Annotated[list[str] | None, typer.Option(
    "--role", help="admin, viewer, exporter or importer; repeatable.")]
Password = Annotated[str | None, typer.Option(
    help="The password (at least 8 characters); else PALLET_NEW_PASSWORD or a prompt.")]

FIELDS = ["username", "roles", "is_active", "created_at"]


@app.command("list")
def list_users(limit: Limit = None, offset: Offset = None, as_json: JsonFlag = False) -> None:
    """List users."""
    show_page(connect().page("users", limit=limit, offset=offset), FIELDS, as_json=as_json,
              noun="user")


@app.command("create")
def create(username: Username, role: Roles = None, password: Password = None,
           as_json: JsonFlag = False) -> None:
    """Create a user."""
    body = {"username": username, "password": read_password(password),
            "roles": role or ["viewer"]}
    show_record(connect().post("users", body), FIELDS, as_json=as_json)


@app.command("show")
def show(username: Username, as_json: JsonFlag = False) -> None:
    """Show a user."""
    show_record(connect().get(path("users", username)), FIELDS, as_json=as_json)


@app.command("update")
def update(username: Username,
           role: Annotated[list[str] | None, typer.Option(
               "--role", help="Replace the user's roles: admin, viewer, exporter or "
                              "importer; repeatable.")] = None,
           password: Annotated[str | None, typer.Option(help="A new password.")] = None,
           ask_password: Annotated[bool, typer.Option(
               "--ask-password", help="Set a new password, from PALLET_NEW_PASSWORD or a "
                                      "prompt.")] = False,
           active: Annotated[bool | None, typer.Option(
               "--active/--inactive", help="Allow or refuse the user's logins.")] = None,
           as_json: JsonFlag = False) -> None:
    """Change a user's roles, password or whether they may log in."""
    changes: dict[str, Any] = {}
    if role:
        changes["roles"] = role
    if password or ask_password:
        changes["password"] = read_password(password)
    if active is not None:
        changes["is_active"] = active
    if not changes:
        fail("nothing to change: give --role, --password, --ask-password, --active or "
             "--inactive")
    show_record(connect().patch(path("users", username), changes), FIELDS, as_json=as_json)


@app.command("delete")
def delete(username: Username, as_json: JsonFlag = False) -> None:
    """Delete a user and their tokens."""
    href = path("users", username)
    connect().delete(href)
    deleted(f"user {username}", f"/api/v1/{href}", as_json=as_json)


@app.command("whoami")
def whoami(as_json: JsonFlag = False) -> None:
    """Show who the CLI is logged in as, with roles and permissions."""
    show_record(connect().get("me"), as_json=as_json)
