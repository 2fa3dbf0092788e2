"""`pallet content ...` and `pallet artifact ...`: content units, and the stored files they
are made of."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from pallet.cli.client import Limit, Offset, connect, path
from pallet.cli.output import JsonFlag, say, show_page, show_record

app = typer.Typer(help="Content units: typed, identified by their fields, shared by "
                       "repositories.", no_args_is_help=True)
create_app = typer.Typer(help="Create a content unit from artifacts already stored.",
                         no_args_is_help=True)
app.add_typer(create_app, name="create")
artifact_app = typer.Typer(help="Artifacts: stored files, identified by their sha256.",
                           no_args_is_help=True)


def _fields(unit: dict[str, Any]) -> str:
    return ", ".join(f"{key}={value}" for key, value in sorted(unit["fields"].items())
                     if key != "sha256")


def _artifacts(unit: dict[str, Any]) -> str:
    return "; ".join(f"{a['relative_path']} sha256:{a['sha256']} "
                     f"{'artifact ' + str(a['artifact']) if a['artifact'] else 'not downloaded'}"
                     for a in unit["artifacts"])


CONTENT_COLUMNS = ["id", "type", ("fields", _fields), "created_at"]
CONTENT_FIELDS = ["id", "type", "fields", ("artifacts", _artifacts), "digest", "href",
                  "created_at"]


@app.command("list")
def list_content(type: Annotated[str | None, typer.Option(help="Only units of this type.")
                                 ] = None,
                 repository: Annotated[str | None, typer.Option(
                     help="Only units in this repository (its newest version).")] = None,
                 version: Annotated[int | None, typer.Option(
                     min=0, help="With --repository: in this version instead.")] = None,
                 relative_path: Annotated[str | None, typer.Option(
                     help="Only units with a file at exactly this path.")] = None,
                 path_prefix: Annotated[str | None, typer.Option(
                     help="Only units with a file whose path starts with this.")] = None,
                 digest: Annotated[str | None, typer.Option(
                     help="Only the unit with this identity digest.")] = None,
                 limit: Limit = None, offset: Offset = None, as_json: JsonFlag = False) -> None:
    """List content units."""
    body = connect().page("content", type=type, repository=repository, version=version,
                          relative_path=relative_path, path_prefix=path_prefix, digest=digest,
                          limit=limit, offset=offset)
    show_page(body, CONTENT_COLUMNS, as_json=as_json, noun="content unit")


@app.command("show")
def show(content_id: Annotated[int, typer.Argument(help="The unit's id.")],
         as_json: JsonFlag = False) -> None:
    """Show a content unit with its artifacts."""
    show_record(connect().get(path("content", content_id)), CONTENT_FIELDS, as_json=as_json)


@create_app.command("file")
def create_file(relative_path: Annotated[str, typer.Option(
                    help="Where the file sits in a repository, e.g. docs/a.txt.")],
                sha256: Annotated[str, typer.Option(
                    help="The sha256 of an artifact already stored (see `pallet upload "
                         "file --artifact-only`).")],
                as_json: JsonFlag = False) -> None:
    """Create a file unit (or find the identical one) from a stored artifact."""
    unit = connect().post(path("content", "file"),
                          {"relative_path": relative_path, "sha256": sha256})
    show_record(unit, CONTENT_FIELDS, as_json=as_json)


ARTIFACT_COLUMNS = ["id", "sha256", "size", "created_at"]


@artifact_app.command("list")
def list_artifacts(sha256: Annotated[str | None, typer.Option(
                       help="Only the artifact with this sha256.")] = None,
                   limit: Limit = None, offset: Offset = None, as_json: JsonFlag = False
                   ) -> None:
    """List stored artifacts."""
    body = connect().page("artifacts", sha256=sha256, limit=limit, offset=offset)
    show_page(body, ARTIFACT_COLUMNS, as_json=as_json, noun="artifact")


@artifact_app.command("show")
def show_artifact(artifact_id: Annotated[int, typer.Argument(help="The artifact's id.")],
                  as_json: JsonFlag = False) -> None:
    """Show a stored artifact."""
    show_record(connect().get(path("artifacts", artifact_id)), ARTIFACT_COLUMNS + ["href"],
                as_json=as_json)


def describe_unit(unit: dict[str, Any]) -> None:
    say(f"content unit {unit['id']} ({unit['type']}: {_fields(unit)})")
