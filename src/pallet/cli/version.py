"""`pallet version ...`: a repository's numbered, immutable versions."""

from __future__ import annotations

from enum import Enum
from typing import Annotated, Any

import typer

from pallet.cli.client import Limit, Offset, connect, path
from pallet.cli.content import CONTENT_COLUMNS
from pallet.cli.output import (JsonFlag, emit_json, fail, say, show_page, show_record,
                               table)
from pallet.cli.task import NoWait, report

app = typer.Typer(help="Repository versions: list, show, compare, delete and repair them.",
                  no_args_is_help=True)

Repository = Annotated[str, typer.Argument(help="The repository's name.")]
Number = Annotated[int, typer.Argument(min=0, help="The version's number.")]


def _counts(version: dict[str, Any]) -> str:
    return ", ".join(f"{kind}: {c['present']} (+{c['added']} -{c['removed']})"
                     for kind, c in sorted(version["counts"].items())) or "empty"


COLUMNS = ["number", ("units", _counts), ("digest", lambda v: v["digest"][:16]), "created_at"]
FIELDS = ["repository", "number", ("units", _counts), "digest", "href", "content_href",
          "created_at"]


def _version(repository: str, number: int, *rest: object) -> str:
    return path("repositories", repository, "versions", number, *rest)


@app.command("list")
def list_versions(repository: Repository, limit: Limit = None, offset: Offset = None,
                  as_json: JsonFlag = False) -> None:
    """List a repository's versions."""
    body = connect().page(path("repositories", repository, "versions"), limit=limit,
                          offset=offset)
    show_page(body, COLUMNS, as_json=as_json, noun="version")


@app.command("show")
def show(repository: Repository, number: Number, as_json: JsonFlag = False) -> None:
    """Show a version: units per type (present, added, removed) and its content digest."""
    show_record(connect().get(_version(repository, number)), FIELDS, as_json=as_json)


class Change(str, Enum):
    added = "added"
    removed = "removed"


@app.command("diff")
def diff(repository: Repository,
         base: Annotated[int, typer.Argument(min=0, help="The version to compare from.")],
         number: Annotated[int, typer.Argument(min=0, help="The version to compare to.")],
         list_: Annotated[Change | None, typer.Option(
             "--list", help="List the units added or removed instead of counting them.")
         ] = None,
         limit: Limit = None, offset: Offset = None, as_json: JsonFlag = False) -> None:
    """What going from version BASE to version NUMBER adds and removes."""
    api = connect()
    if list_ is not None:
        body = api.page(_version(repository, number, "diff", base, "content"),
                        change=list_.value, limit=limit, offset=offset)
        show_page(body, CONTENT_COLUMNS, as_json=as_json, noun=f"{list_.value} unit")
        return
    answer = api.get(_version(repository, number, "diff", base))
    if as_json:
        emit_json(answer)
        return
    rows = [{"type": kind, **counts} for kind, counts in sorted(answer["counts"].items())]
    if rows:
        table(rows, ["type", "added", "removed"])
    else:
        say(f"versions {base} and {number} of {repository} hold the same units")


@app.command("delete")
def delete(repository: Repository, number: Number, no_wait: NoWait = False,
           as_json: JsonFlag = False) -> None:
    """Delete a version; its changes fold into the next one, so no other version changes."""
    api = connect()
    report(api, api.delete(_version(repository, number)), no_wait=no_wait, as_json=as_json,
           describe=lambda task: say(f"version {number} of {repository} deleted"))


ReportOnly = Annotated[bool, typer.Option(
    "--report-only", help="Only report missing and corrupt artifacts: fetch nothing, change "
                          "nothing, and exit 0 whatever is found.")]


def show_repair(reports: list[dict[str, Any]]) -> None:
    """Repair reports as a table per version, then every artifact restored or still broken."""
    table(sorted(reports, key=lambda r: r["version"]),
          ["version", "checked", "missing", "corrupt", "not_downloaded", "restored", "broken"])
    rows = [{"version": r["version"], "state": state, **artifact}
            for r in reports for state in ("restored", "broken")
            for artifact in r[f"{state}_artifacts"]]
    if rows:
        table(rows, ["version", "state", "problem", "relative_path", "sha256",
                     ("reason", lambda row: row.get("reason") or "")])
    else:
        say("no missing or corrupt artifacts")
    duplicates = [{"version": r["version"], "key": _key_text(d["key"]),
                   "units": ", ".join(map(str, d["units"])), "next_version_keeps": d["units"][-1]}
                  for r in reports for d in r.get("duplicate_keys", ())]
    if duplicates:
        say("units that share a repository key (made before keys were enforced); the next "
            "version keeps the newest of each:")
        table(duplicates, ["version", "key", "units", "next_version_keeps"])


def _key_text(key: dict[str, Any]) -> str:
    return ", ".join(f"{name}={value}" for name, value in key.items())


def check_repaired(reports: list[dict[str, Any]]) -> None:
    """Exit non-zero while anything stays broken (unless only reporting)."""
    broken = sum(r["broken"] for r in reports if not r["report_only"])
    if broken:
        fail(f"{broken} artifact(s) could not be restored: no remote delivered them again")


@app.command("repair")
def repair(repository: Repository, number: Number, report_only: ReportOnly = False,
           no_wait: NoWait = False, as_json: JsonFlag = False) -> None:
    """Re-hash every artifact of a version and fetch the missing and corrupt ones again from
    their remotes; exits 1 if some could not be restored."""
    api = connect()
    task = report(api, api.post(_version(repository, number, "repair"),
                                {"report_only": report_only}),
                  no_wait=no_wait, as_json=as_json,
                  describe=lambda task: show_repair([task["result"]]))
    if not no_wait:
        check_repaired([task["result"]])
