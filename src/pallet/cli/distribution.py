"""`pallet distribution ...`: base paths where the content app serves a publication, a
repository version or a repository's newest publication."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from pallet.cli.client import Limit, Offset, connect, path
from pallet.cli.output import JsonFlag, deleted, fail, show_page, show_record

app = typer.Typer(help="Distributions: where the content app serves what.",
                  no_args_is_help=True)

Name = Annotated[str, typer.Argument(help="The distribution's name.")]
Publication = Annotated[int | None, typer.Option(
    "--publication", min=0, metavar="ID", help="Serve this publication.")]
Repository = Annotated[str | None, typer.Option(
    "--repository", metavar="NAME", help="Serve this repository's newest publication "
                                         "(its newest version if its type has none).")]
Version = Annotated[str | None, typer.Option(
    "--version", metavar="REPOSITORY:N", help="Serve this repository version.")]


def target(d: dict[str, Any]) -> str:
    """What a distribution serves, in a few words."""
    if d["publication"] is not None:
        return f"publication {d['publication']}"
    if d["repository_version"] is not None:
        v = d["repository_version"]
        return f"version {v['version']} of {v['repository']}"
    if d["repository"] is not None:
        return f"repository {d['repository']}"
    return "nothing"


COLUMNS = ["name", "base_path", ("serves", target), "hidden", "updated_at"]
FIELDS = ["name", "base_path", "base_url", ("serves", target), "hidden", "href",
          "created_at", "updated_at"]


def _targets(publication: int | None, repository: str | None, version: str | None
             ) -> dict[str, Any]:
    """The body's target fields for the one target option given (none: {})."""
    given = [o for o, v in (("--publication", publication), ("--repository", repository),
                            ("--version", version)) if v is not None]
    if len(given) > 1:
        fail(f"give one target at most, not {' and '.join(given)}")
    if publication is not None:
        return {"publication": publication}
    if repository is not None:
        return {"repository": repository}
    if version is not None:
        name, sep, number = version.rpartition(":")
        if not sep or not name or not (number.isascii() and number.isdigit()):
            fail(f"--version {version!r}: expected REPOSITORY:N, e.g. web:3")
        return {"repository_version": {"repository": name, "version": int(number)}}
    return {}


@app.command("create")
def create(name: Name,
           base_path: Annotated[str, typer.Option(
               help="Where it is served: /pallet/content/BASE_PATH/. May not overlap "
                    "another distribution's.")],
           publication: Publication = None, repository: Repository = None,
           version: Version = None,
           hidden: Annotated[bool, typer.Option(
               "--hidden", help="Leave it out of the content app's index page.")] = False,
           as_json: JsonFlag = False) -> None:
    """Create a distribution (with no target it serves nothing until one is set)."""
    body = {"name": name, "base_path": base_path, "hidden": hidden,
            **_targets(publication, repository, version)}
    show_record(connect().post("distributions", body), FIELDS, as_json=as_json)


@app.command("list")
def list_distributions(base_path: Annotated[str | None, typer.Option(
                           help="Only the distribution at this base path.")] = None,
                       hidden: Annotated[bool | None, typer.Option(
                           "--hidden/--visible", help="Only hidden, or only visible, ones.",
                           show_default=False)] = None,
                       limit: Limit = None, offset: Offset = None,
                       as_json: JsonFlag = False) -> None:
    """List distributions, hidden ones included."""
    body = connect().page("distributions", base_path=base_path,
                          hidden=None if hidden is None else str(hidden).lower(),
                          limit=limit, offset=offset)
    show_page(body, COLUMNS, as_json=as_json, noun="distribution")


@app.command("show")
def show(name: Name, as_json: JsonFlag = False) -> None:
    """Show a distribution and what it serves."""
    show_record(connect().get(path("distributions", name)), FIELDS, as_json=as_json)


@app.command("update")
def update(name: Name,
           new_name: Annotated[str | None, typer.Option(help="Rename it.")] = None,
           base_path: Annotated[str | None, typer.Option(help="Serve it elsewhere.")] = None,
           publication: Publication = None, repository: Repository = None,
           version: Version = None,
           no_target: Annotated[bool, typer.Option(
               "--no-target", help="Serve nothing.")] = False,
           hidden: Annotated[bool | None, typer.Option(
               "--hidden/--visible", help="Leave it out of, or show it on, the content "
                                          "app's index page.", show_default=False)] = None,
           as_json: JsonFlag = False) -> None:
    """Change a distribution's name, base path, target or visibility."""
    changes: dict[str, Any] = _targets(publication, repository, version)
    if no_target:
        if changes:
            fail("give a target or --no-target, not both")
        changes = {"publication": None, "repository": None, "repository_version": None}
    if new_name is not None:
        changes["name"] = new_name
    if base_path is not None:
        changes["base_path"] = base_path
    if hidden is not None:
        changes["hidden"] = hidden
    if not changes:
        fail("nothing to change: give --new-name, --base-path, --publication, --repository, "
             "--version, --no-target, --hidden or --visible")
    show_record(connect().patch(path("distributions", name), changes), FIELDS,
                as_json=as_json)


@app.command("delete")
def delete(name: Name, as_json: JsonFlag = False) -> None:
    """Delete a distribution (what it served stays)."""
    href = path("distributions", name)
    connect().delete(href)
    deleted(f"distribution {name}", f"/api/v1/{href}", as_json=as_json)
