"""`pallet publication ...`: publish versions, list, show and delete publications."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from pallet.cli.client import Limit, Offset, connect, path
from pallet.cli.output import JsonFlag, deleted, fail, say, show_page, show_record
from pallet.cli.task import NoWait, report

app = typer.Typer(help="Publications: a version rendered for serving, with its metadata "
                       "files.", no_args_is_help=True)

PublicationId = Annotated[int, typer.Argument(min=0, help="The publication's id.")]
PublishOption = Annotated[list[str] | None, typer.Option(
    "--option", metavar="KEY=VALUE", help="A publish option of the repository's type, e.g. "
                                          "manifest=PULP_MANIFEST; repeatable.")]


def parse_options(values: list[str] | None, option: str = "--option") -> dict[str, str]:
    """{"key": "value"} from "key=value" strings (the server checks names and values)."""
    options: dict[str, str] = {}
    for value in values or []:
        key, sep, text = value.partition("=")
        if not sep or not key.strip():
            fail(f"{option} {value!r}: expected KEY=VALUE")
        if key.strip() in options:
            fail(f"{option}: {key.strip()!r} is given twice")
        options[key.strip()] = text
    return options


def _files(publication: dict[str, Any]) -> str:
    return ", ".join(f["relative_path"] for f in publication["metadata_files"]) or "-"


COLUMNS = ["id", "repository", "version", "options", ("metadata", _files), "created_at"]
FIELDS = ["id", "repository", "version", "type", "options", "pass_through",
          ("metadata_files", lambda p: "; ".join(
              f"{f['relative_path']} ({f['size']} bytes, sha256 {f['sha256']})"
              for f in p["metadata_files"]) or "-"),
          "href", "version_href", "created_at"]


@app.command("create")
def create(repository: Annotated[str, typer.Argument(help="The repository's name.")],
           version: Annotated[int | None, typer.Option(
               min=0, help="The version to publish (default: the newest).")] = None,
           option: PublishOption = None, no_wait: NoWait = False,
           as_json: JsonFlag = False) -> None:
    """Publish a version; the same version with the same options is published once."""
    body = {"repository": repository, "version": version, "options": parse_options(option)}
    api = connect()

    def describe(task: dict[str, Any]) -> None:
        result = task["result"]
        what = f"publication {result['publication']} of {result['repository']} version " \
               f"{result['version']}"
        say(f"created {what}" if result["created"] else
            f"{what} exists already with these options")

    report(api, api.post("publications", body), no_wait=no_wait, as_json=as_json,
           describe=describe)


@app.command("list")
def list_publications(repository: Annotated[str | None, typer.Option(
                          help="Only publications of this repository.")] = None,
                      version: Annotated[int | None, typer.Option(
                          min=0, help="Only publications of this version (needs "
                                      "--repository).")] = None,
                      limit: Limit = None, offset: Offset = None,
                      as_json: JsonFlag = False) -> None:
    """List publications, newest first."""
    if version is not None and repository is None:
        fail("--version needs --repository")
    body = connect().page("publications", repository=repository, version=version,
                          limit=limit, offset=offset)
    show_page(body, COLUMNS, as_json=as_json, noun="publication")


@app.command("show")
def show(publication_id: PublicationId, as_json: JsonFlag = False) -> None:
    """Show a publication and its metadata files."""
    show_record(connect().get(path("publications", publication_id)), FIELDS, as_json=as_json)


@app.command("delete")
def delete(publication_id: PublicationId, as_json: JsonFlag = False) -> None:
    """Delete a publication (refused while a distribution names it)."""
    href = path("publications", publication_id)
    connect().delete(href)
    deleted(f"publication {publication_id}", f"/api/v1/{href}", as_json=as_json)


@app.command("tree")
def tree(publication_id: PublicationId,
         path_: Annotated[str, typer.Option(
             "--path", help="Target directory on the server, under its allowed export "
                            "directories.")],
         method: Annotated[str, typer.Option(
             help="copy, hardlink or symlink (from the artifact store).")] = "copy",
         start_version: Annotated[int | None, typer.Option(
             min=0, help="Only the change since this version of the repository: files "
                         "added are written, files removed deleted.")] = None,
         no_wait: NoWait = False, as_json: JsonFlag = False) -> None:
    """Write a publication as a plain directory tree that any client, or another server's
    file:// remote, can read."""
    api = connect()

    def describe(task: dict[str, Any]) -> None:
        result = task["result"]
        say(f"{result['repository']} version {result['version']}: {result['files']} files "
            f"written ({result['method']}), {result['removed']} removed, "
            f"{result['metadata']} metadata files, in {result['path']}")

    body = {"path": path_, "method": method, "start_version": start_version}
    report(api, api.post(path("publications", publication_id, "tree"), body),
           no_wait=no_wait, as_json=as_json, describe=describe)
