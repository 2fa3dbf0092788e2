"""`pallet rpm …`: the rpm type's own commands, over the core API and the type's routes.

- `pallet rpm copy DEST --from SOURCE --name bash --advisory RHSA-2026:1 --dependencies`: a
  copy (`pallet repository copy`) by package name, NEVRA, advisory id or group id;
- `pallet rpm packages REPO [--name N] [--arch A]`: packages by NEVRA, not every field.

The CLI is a client of the API: these commands only build requests.
"""

from __future__ import annotations

from typing import Annotated, Any

import typer

from pallet.cli.client import Limit, Offset, connect, path
from pallet.cli.output import JsonFlag, fail, show_page
from pallet.cli.repository import start_copy
from pallet.cli.task import NoWait
from pallet.plugins.rpm.nevra import parse_nevra

app = typer.Typer(help="yum repositories: copy packages, advisories and groups; list packages.",
                  no_args_is_help=True)


@app.command("copy")
def copy(destination: Annotated[str, typer.Argument(help="The rpm repository to copy into.")],
         source: Annotated[str, typer.Option("--from", help="The rpm repository to copy "
                                                            "from.")],
         name: Annotated[list[str] | None, typer.Option(
             metavar="NAME", help="Every package of this name; repeatable.")] = None,
         nevra: Annotated[list[str] | None, typer.Option(
             metavar="NEVRA", help="One package, as name-[epoch:]version-release.arch; "
                                   "repeatable.")] = None,
         advisory: Annotated[list[str] | None, typer.Option(
             metavar="ID", help="An advisory, with the packages it names; repeatable.")] = None,
         group: Annotated[list[str] | None, typer.Option(
             metavar="ID", help="A comps group, with its packages; repeatable.")] = None,
         source_version: Annotated[int | None, typer.Option(
             min=0, help="The source's version (default: the newest).")] = None,
         dependencies: Annotated[bool, typer.Option(
             "--dependencies", help="Also copy every package they need, solved by "
                                    "libsolv.")] = False,
         no_wait: NoWait = False, as_json: JsonFlag = False) -> None:
    """Copy packages, advisories and groups, with what they name (and, with --dependencies,
    what the packages need), into a new version of DESTINATION."""
    match: list[dict[str, Any]] = []
    match += [{"type": "rpm.package", "fields": {"name": n}} for n in name or []]
    for given in nevra or []:
        try:
            match.append({"type": "rpm.package", "fields": parse_nevra(given)})
        except ValueError as exc:
            fail(f"--nevra: {exc}", code=2)
    match += [{"type": "rpm.advisory", "fields": {"id": a}} for a in advisory or []]
    match += [{"type": "rpm.group", "fields": {"id": g}} for g in group or []]
    if not match:
        fail("name what to copy: --name, --nevra, --advisory or --group", code=2)
    start_copy(destination, {"source": source, "source_version": source_version,
                             "match": match, "dependencies": dependencies},
               no_wait=no_wait, as_json=as_json)


@app.command("packages")
def packages(repository: Annotated[str, typer.Argument(help="The rpm repository.")],
             name: Annotated[str | None, typer.Option(help="Only packages of this name.")] = None,
             arch: Annotated[str | None, typer.Option(help="Only packages of this arch.")] = None,
             version: Annotated[int | None, typer.Option(
                 min=0, help="The repository's version (default: the newest).")] = None,
             limit: Limit = None, offset: Offset = None, as_json: JsonFlag = False) -> None:
    """List a repository version's packages: id, NEVRA, location and summary."""
    body = connect().page(path("rpm", "repositories", repository, "packages"), package=name,
                          arch=arch, version=version, limit=limit, offset=offset)
    show_page(body, ["id", "nevra", "location", "summary"], as_json=as_json, noun="package")
