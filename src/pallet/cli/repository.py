"""`pallet repository ...`: create, list, show, update, delete, modify and repair
repositories."""

from __future__ import annotations

from typing import Annotated, Any, Iterable, TextIO

import typer

from pallet.cli.client import Limit, Offset, connect, path
from pallet.cli.output import JsonFlag, emit_json, fail, say, show_page, show_record
from pallet.cli.task import (Describe, NoWait, group_tasks, queued, report,
                             wait_for_group)
from pallet.cli.version import show_repair

app = typer.Typer(help="Repositories: named, versioned sets of content.", no_args_is_help=True)

Name = Annotated[str, typer.Argument(help="The repository's name.")]
Description = Annotated[str | None, typer.Option(help="A sentence about the repository.")]
RetainVersions = Annotated[int | None, typer.Option(
    min=1, help="Keep only the newest N versions; older ones are deleted as new ones come.")]
ContentIds = Annotated[list[int] | None, typer.Option(
    metavar="ID", help="A content unit's id; repeatable.")]
IdsFile = Annotated[typer.FileText | None, typer.Option(
    metavar="FILE", help="A file with one content id per line ('-': standard input).")]

COLUMNS = ["name", "type", "latest_version", "retain_versions", "description", "updated_at"]
FIELDS = ["name", "type", "description", "latest_version", "retain_versions", "href",
          "created_at", "updated_at"]


@app.command("create")
def create(name: Name,
           type: Annotated[str, typer.Option(help="Repository type (`pallet status` lists "
                                                  "them).")] = "file",
           description: Description = None, retain_versions: RetainVersions = None,
           as_json: JsonFlag = False) -> None:
    """Create an empty repository (its version 0)."""
    body = {"name": name, "type": type, "description": description or "",
            "retain_versions": retain_versions}
    show_record(connect().post("repositories", body), FIELDS, as_json=as_json)


@app.command("list")
def list_repositories(name_contains: Annotated[str | None, typer.Option(
                          help="Only repositories whose name contains this.")] = None,
                      type: Annotated[str | None, typer.Option(
                          help="Only repositories of this type.")] = None,
                      limit: Limit = None, offset: Offset = None,
                      as_json: JsonFlag = False) -> None:
    """List repositories."""
    body = connect().page("repositories", name_contains=name_contains, type=type, limit=limit,
                          offset=offset)
    show_page(body, COLUMNS, as_json=as_json, noun="repository")


@app.command("show")
def show(name: Name, as_json: JsonFlag = False) -> None:
    """Show a repository."""
    show_record(connect().get(path("repositories", name)), FIELDS, as_json=as_json)


@app.command("update")
def update(name: Name, description: Description = None, retain_versions: RetainVersions = None,
           keep_all_versions: Annotated[bool, typer.Option(
               "--keep-all-versions", help="Keep every version (undoes --retain-versions).")
           ] = False,
           new_name: Annotated[str | None, typer.Option(help="Rename the repository.")] = None,
           as_json: JsonFlag = False) -> None:
    """Change a repository's description, version retention or name."""
    if retain_versions is not None and keep_all_versions:
        fail("give --retain-versions or --keep-all-versions, not both")
    changes: dict[str, Any] = {}
    if description is not None:
        changes["description"] = description
    if retain_versions is not None or keep_all_versions:
        changes["retain_versions"] = retain_versions
    if new_name is not None:
        changes["name"] = new_name
    if not changes:
        fail("nothing to change: give --description, --retain-versions, --keep-all-versions "
             "or --new-name")
    show_record(connect().patch(path("repositories", name), changes), FIELDS, as_json=as_json)


@app.command("delete")
def delete(name: Name, no_wait: NoWait = False, as_json: JsonFlag = False) -> None:
    """Delete a repository and all its versions (its content units stay)."""
    api = connect()
    report(api, api.delete(path("repositories", name)), no_wait=no_wait, as_json=as_json,
           describe=lambda task: say(f"repository {name} deleted"))


def read_ids(file: TextIO | None, option: str) -> list[int]:
    """Content ids, one a line; blank lines and lines starting with '#' are skipped."""
    if file is None:
        return []
    ids = []
    for number, line in enumerate(file, start=1):
        text = line.strip()
        if text and not text.startswith("#"):
            if not (text.isascii() and text.isdigit()):
                fail(f"{option} {file.name}, line {number}: {text[:40]!r} is not a content id")
            ids.append(int(text))
    return ids


def describe_modify(name: str) -> Describe:
    """How a finished modify of repository `name` reads: the version it made, if any."""
    def describe(task: dict[str, Any]) -> None:
        version = (task["result"] or {}).get("version")
        if version is None:
            say(f"repository {name}: nothing changed, no new version")
        else:
            say(f"repository {name}: created version {version}")
    return describe


def _ids(given: Iterable[int] | None, file: TextIO | None, option: str) -> list[int]:
    return list(given or []) + read_ids(file, option)


@app.command("modify")
def modify(name: Name, add: ContentIds = None, remove: ContentIds = None,
           add_from: IdsFile = None, remove_from: IdsFile = None,
           remove_all: Annotated[bool, typer.Option(
               "--remove-all", help="Start from an empty set instead of the base version.")
           ] = False,
           base_version: Annotated[int | None, typer.Option(
               min=0, help="The version to start from (default: the newest).")] = None,
           no_wait: NoWait = False, as_json: JsonFlag = False) -> None:
    """Add and remove content units, making a new version (none if nothing changes)."""
    body = {"add_content": _ids(add, add_from, "--add-from"),
            "remove_content": _ids(remove, remove_from, "--remove-from"),
            "remove_all": remove_all, "base_version": base_version}
    api = connect()
    report(api, api.post(path("repositories", name, "modify"), body), no_wait=no_wait,
           as_json=as_json, describe=describe_modify(name))


@app.command("repair")
def repair(name: Name, no_wait: NoWait = False, as_json: JsonFlag = False) -> None:
    """Re-hash the artifacts of every version; report the missing and corrupt ones."""
    api = connect()
    group = api.post(path("repositories", name, "repair"))
    if no_wait:
        queued(group, "task group", as_json=as_json)
        return
    group = wait_for_group(api, group)
    tasks = group_tasks(api, group)
    if as_json:
        emit_json({"group": group, "tasks": tasks})
    else:
        show_repair([t["result"] for t in tasks if t["state"] == "completed"])
    unfinished = [t for t in tasks if t["state"] != "completed"]
    if unfinished:
        fail(f"{len(unfinished)} of the {len(tasks)} repair tasks did not complete: "
             + ", ".join(f"task {t['id']} {t['state']}" for t in unfinished))
