"""`pallet signing-key|exporter|export|importer|import ...`: the air-gap transfer.

On the connected side: `pallet exporter create`, then `pallet exporter run` for each export
(or `pallet exporter stream` to download one). On the disconnected side: `pallet importer
create`, `pallet importer check` (a dry run that prints the plan) and `pallet importer run`.
"""

from __future__ import annotations

import contextlib
import re
import sys
from pathlib import Path
from typing import Annotated, Any, Iterator, Optional

import httpx
import typer

from pallet.cli.client import Client, ClientError, Limit, Offset, connect, path
from pallet.cli.orphan import size_text
from pallet.cli.output import (JsonFlag, deleted, emit_json, fail, note, say, show_page,
                               show_record, table)
from pallet.cli.task import NoWait, report
from pallet.cli.upload import MiB, chunks, missing_ranges, send

key_app = typer.Typer(help="Signing keys: ed25519 keys that sign exports.", no_args_is_help=True)
exporter_app = typer.Typer(help="Exporters: which repositories to export, and where to.",
                           no_args_is_help=True)
export_app = typer.Typer(help="Exports written: their files, versions and digests.",
                         no_args_is_help=True)
importer_app = typer.Typer(help="Importers: how archives are checked and imported here.",
                           no_args_is_help=True)
import_app = typer.Typer(help="Imports done: what each one did.", no_args_is_help=True)

Name = Annotated[str, typer.Argument(help="Its name.")]
SIZE = re.compile(r"^(\d+)\s*([KMGT]i?B?|B)?$", re.I)


def parse_size(text: str | None) -> int | None:
    """Bytes from '4096', '100M', '4GiB'… (binary units)."""
    if text is None:
        return None
    match = SIZE.match(text.strip())
    if not match:
        fail(f"{text!r} is not a size: use bytes, or a number with K, M, G or T")
    unit = (match.group(2) or "B")[0].upper()
    return int(match.group(1)) * {"B": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30,
                                  "T": 1 << 40}[unit]


def parse_pairs(values: list[str] | None, option: str, number: bool = False) -> dict[str, Any]:
    pairs: dict[str, Any] = {}
    for value in values or []:
        key, sep, text = value.partition("=")
        if not sep or not key or not text:
            fail(f"{option} {value!r}: expected NAME={'NUMBER' if number else 'NAME'}")
        if number and not text.isdigit():
            fail(f"{option} {value!r}: {text!r} is not a version number")
        pairs[key] = int(text) if number else text
    return pairs


# -- signing keys ---------------------------------------------------------------------------

KEY_FIELDS = ["name", "key_id", "created_at", "href"]


@key_app.command("create")
def create_key(name: Name, as_json: JsonFlag = False) -> None:
    """Create an ed25519 signing key on the server (its private half never leaves it)."""
    show_record(connect().post("signing-keys", {"name": name}), KEY_FIELDS, as_json=as_json)


@key_app.command("list")
def list_keys(limit: Limit = None, offset: Offset = None, as_json: JsonFlag = False) -> None:
    """List signing keys."""
    show_page(connect().page("signing-keys", limit=limit, offset=offset), KEY_FIELDS,
              as_json=as_json, noun="signing key")


@key_app.command("show")
def show_key(name: Name, as_json: JsonFlag = False) -> None:
    """Show a signing key, with its public key."""
    show_record(connect().get(path("signing-keys", name)), KEY_FIELDS + ["public_key"],
                as_json=as_json)


@key_app.command("export")
def export_key(name: Name, output: Annotated[Optional[Path], typer.Option(
        "--output", "-o", help="Write the public key (PEM) here instead of to stdout.")] = None
        ) -> None:
    """Print a signing key's public key (PEM), for importers to trust."""
    pem = connect().get(path("signing-keys", name))["public_key"]
    if output is None:
        sys.stdout.write(pem)
    else:
        output.write_text(pem)
        note(f"public key of {name} written to {output}")


@key_app.command("delete")
def delete_key(name: Name, as_json: JsonFlag = False) -> None:
    """Delete a signing key (refused while an exporter uses it)."""
    href = path("signing-keys", name)
    connect().delete(href)
    deleted(f"signing key {name}", f"/api/v1/{href}", as_json=as_json)


# -- exporters ------------------------------------------------------------------------------

EXPORTER_FIELDS = ["name", "path", "repositories", "chunk_size", "signing_key", "last_export",
                   "href", "created_at", "updated_at"]
Repositories = Annotated[Optional[list[str]], typer.Option(
    "--repository", "-r", help="A repository to export; repeatable.")]
ChunkSize = Annotated[Optional[str], typer.Option(
    help="Split exports into files of this size (e.g. 4G, 700M); default one file.")]


@exporter_app.command("create")
def create_exporter(name: Name,
                    path_: Annotated[str, typer.Option(
                        "--path", help="Output directory on the server, under its allowed "
                                       "export directories.")],
                    repository: Repositories = None, chunk_size: ChunkSize = None,
                    signing_key: Annotated[Optional[str], typer.Option(
                        help="Sign every export with this signing key.")] = None,
                    as_json: JsonFlag = False) -> None:
    """Create an exporter of one or more repositories."""
    if not repository:
        fail("give at least one --repository")
    body = {"name": name, "path": path_, "repositories": repository,
            "chunk_size": parse_size(chunk_size), "signing_key": signing_key}
    show_record(connect().post("exporters", body), EXPORTER_FIELDS, as_json=as_json)


@exporter_app.command("list")
def list_exporters(limit: Limit = None, offset: Offset = None, as_json: JsonFlag = False) -> None:
    """List exporters."""
    show_page(connect().page("exporters", limit=limit, offset=offset),
              ["name", "repositories", "path", "chunk_size", "signing_key", "last_export"],
              as_json=as_json, noun="exporter")


@exporter_app.command("show")
def show_exporter(name: Name, as_json: JsonFlag = False) -> None:
    """Show an exporter."""
    show_record(connect().get(path("exporters", name)), EXPORTER_FIELDS, as_json=as_json)


@exporter_app.command("update")
def update_exporter(name: Name,
                    path_: Annotated[Optional[str], typer.Option("--path", help="New output "
                                                                 "directory.")] = None,
                    repository: Repositories = None, chunk_size: ChunkSize = None,
                    single_file: Annotated[bool, typer.Option(
                        "--single-file", help="Write exports as one file again.")] = False,
                    signing_key: Annotated[Optional[str], typer.Option(
                        help="Sign exports with this key.")] = None,
                    no_signing: Annotated[bool, typer.Option(
                        "--no-signing", help="Stop signing exports.")] = False,
                    as_json: JsonFlag = False) -> None:
    """Change an exporter; --repository replaces the whole list."""
    changes: dict[str, Any] = {}
    if path_ is not None:
        changes["path"] = path_
    if repository:
        changes["repositories"] = repository
    if chunk_size is not None or single_file:
        changes["chunk_size"] = None if single_file else parse_size(chunk_size)
    if signing_key is not None or no_signing:
        changes["signing_key"] = None if no_signing else signing_key
    if not changes:
        fail("nothing to change")
    show_record(connect().patch(path("exporters", name), changes), EXPORTER_FIELDS,
                as_json=as_json)


@exporter_app.command("delete")
def delete_exporter(name: Name, as_json: JsonFlag = False) -> None:
    """Delete an exporter (its exports stay listed, with their files)."""
    href = path("exporters", name)
    connect().delete(href)
    deleted(f"exporter {name}", f"/api/v1/{href}", as_json=as_json)


NoFetch = Annotated[bool, typer.Option(
    "--no-fetch", help="Fail if a file of an on-demand unit is not stored, instead of "
                       "fetching it from its remote first.")]


@exporter_app.command("run")
def run_exporter(name: Name,
                 incremental: Annotated[bool, typer.Option(
                     "--incremental", help="Only the change since the last export.")] = False,
                 version: Annotated[Optional[list[str]], typer.Option(
                     metavar="REPO=N", help="Export version N of REPO (default: the "
                                            "newest); repeatable.")] = None,
                 start_version: Annotated[Optional[list[str]], typer.Option(
                     metavar="REPO=N", help="Export REPO's change since its version N; "
                                            "repeatable.")] = None,
                 chunk_size: ChunkSize = None,
                 single_file: Annotated[bool, typer.Option(
                     "--single-file", help="One file, whatever the exporter's chunk size.")
                 ] = False,
                 no_fetch: NoFetch = False,
                 no_wait: NoWait = False, as_json: JsonFlag = False) -> None:
    """Export into the exporter's directory: chunk files and a table of contents. Files of
    on-demand units are fetched from their remotes first."""
    body = {"incremental": incremental, "versions": parse_pairs(version, "--version", True),
            "start_versions": parse_pairs(start_version, "--start-version", True),
            "chunk_size": parse_size(chunk_size), "single_file": single_file,
            "fetch": not no_fetch}
    api = connect()

    def describe(task: dict[str, Any]) -> None:
        result = task["result"]
        kind = "incremental export" if result["incremental"] else "export"
        say(f"{kind} {result['export']}: {result['artifacts']} artifacts, "
            f"{size_text(result['bytes'])} in {result['chunks']} file(s)")
        say(f"table of contents: {result['toc']}")

    report(api, api.post(path("exporters", name, "export"), body), no_wait=no_wait,
           as_json=as_json, describe=describe)


@exporter_app.command("stream")
def stream_exporter(name: Name,
                    output: Annotated[str, typer.Option(
                        "--output", "-o", help="A file to write, or - for standard output.")],
                    incremental: Annotated[bool, typer.Option(
                        "--incremental", help="Only the change since the last export.")] = False,
                    no_fetch: NoFetch = False) -> None:
    """Download an export as one stream (nothing is written on the server). Its table of
    contents is its last member; `pallet importer run --file` imports it."""
    api = connect()
    target = sys.stdout.buffer if output == "-" else None
    written = 0
    try:
        out = target or open(output, "xb")
    except OSError as exc:
        fail(f"cannot write {output}: {exc.strerror}")
    try:
        with api.stream("GET", path("exporters", name, "stream"),
                        params={"incremental": str(incremental).lower(),
                                "fetch": str(not no_fetch).lower()}) as response:
            for block in response.iter_bytes(MiB):
                out.write(block)
                written += len(block)
    except ClientError:
        if target is None:
            out.close()
            Path(output).unlink(missing_ok=True)
        raise
    if target is None:
        out.close()
    note(f"{size_text(written)} written to {output}")


# -- exports --------------------------------------------------------------------------------

EXPORT_COLUMNS = ["id", "exporter", "incremental", "artifacts", "bytes",
                  ("versions", lambda e: ", ".join(f"{v['name']}:{v['version']}"
                                                   for v in e["versions"])),
                  "signed_by", "created_at"]


@export_app.command("list")
def list_exports(exporter: Annotated[Optional[str], typer.Option(
                     help="Only exports of this exporter.")] = None,
                 limit: Limit = None, offset: Offset = None, as_json: JsonFlag = False) -> None:
    """List exports, newest first."""
    show_page(connect().page("exports", exporter=exporter, limit=limit, offset=offset),
              EXPORT_COLUMNS, as_json=as_json, noun="export")


@export_app.command("show")
def show_export(export_id: Annotated[int, typer.Argument(help="The export's id.")],
                as_json: JsonFlag = False) -> None:
    """Show an export: its files with their checksums, versions and digests."""
    export = connect().get(path("exports", export_id))
    if as_json:
        emit_json(export)
        return
    show_record(export, ["id", "exporter", "export_id", "incremental", "directory",
                         "toc_file", "signed_by", "artifacts", "bytes", "duration_seconds",
                         "created_at"], as_json=False)
    table(export["versions"], ["name", "version", "base_version", "digest"])
    table(export["chunks"], ["name", "size", "sha256"])


@export_app.command("delete")
def delete_export(export_id: Annotated[int, typer.Argument(help="The export's id.")],
                  as_json: JsonFlag = False) -> None:
    """Delete an export and its files."""
    href = path("exports", export_id)
    connect().delete(href)
    deleted(f"export {export_id}", f"/api/v1/{href}", as_json=as_json)


# -- importers ------------------------------------------------------------------------------

IMPORTER_FIELDS = ["name", "mapping", "create_repositories", "distributions",
                   ("trusted_keys", lambda i: len(i["trusted_keys"])), "require_signature",
                   "href", "created_at", "updated_at"]
Mapping = Annotated[Optional[list[str]], typer.Option(
    "--map", metavar="SOURCE=DESTINATION", help="Import repository SOURCE into DESTINATION; "
                                                "repeatable.")]
TrustKey = Annotated[Optional[list[Path]], typer.Option(
    "--trust-key", exists=True, dir_okay=False, help="A public key file (PEM, from `pallet "
                                                     "signing-key export`); repeatable.")]


@importer_app.command("create")
def create_importer(name: Name, map_: Mapping = None,
                    create_repositories: Annotated[bool, typer.Option(
                        "--create-repositories", help="Create missing destinations.")] = False,
                    no_distributions: Annotated[bool, typer.Option(
                        "--no-distributions", help="Leave the archive's distributions out.")
                    ] = False,
                    trust_key: TrustKey = None,
                    require_signature: Annotated[bool, typer.Option(
                        "--require-signature", help="Refuse archives not signed by a "
                                                    "trusted key.")] = False,
                    as_json: JsonFlag = False) -> None:
    """Create an importer."""
    body = {"name": name, "mapping": parse_pairs(map_, "--map"),
            "create_repositories": create_repositories, "distributions": not no_distributions,
            "trusted_keys": [key.read_text() for key in trust_key or []],
            "require_signature": require_signature}
    show_record(connect().post("importers", body), IMPORTER_FIELDS, as_json=as_json)


@importer_app.command("list")
def list_importers(limit: Limit = None, offset: Offset = None, as_json: JsonFlag = False) -> None:
    """List importers."""
    show_page(connect().page("importers", limit=limit, offset=offset), IMPORTER_FIELDS,
              as_json=as_json, noun="importer")


@importer_app.command("show")
def show_importer(name: Name, as_json: JsonFlag = False) -> None:
    """Show an importer."""
    show_record(connect().get(path("importers", name)), IMPORTER_FIELDS, as_json=as_json)


@importer_app.command("update")
def update_importer(name: Name, map_: Mapping = None,
                    create_repositories: Annotated[Optional[bool], typer.Option(
                        "--create-repositories/--no-create-repositories", show_default=False,
                        help="Create missing destinations, or not.")] = None,
                    distributions: Annotated[Optional[bool], typer.Option(
                        "--distributions/--no-distributions", show_default=False,
                        help="Bring the archive's distributions, or not.")] = None,
                    trust_key: TrustKey = None,
                    require_signature: Annotated[Optional[bool], typer.Option(
                        "--require-signature/--no-require-signature", show_default=False,
                        help="Refuse unsigned archives, or not.")] = None,
                    as_json: JsonFlag = False) -> None:
    """Change an importer; --map and --trust-key replace the whole mapping or key list."""
    changes: dict[str, Any] = {"create_repositories": create_repositories,
                               "distributions": distributions,
                               "require_signature": require_signature}
    changes = {key: value for key, value in changes.items() if value is not None}
    if map_:
        changes["mapping"] = parse_pairs(map_, "--map")
    if trust_key:
        changes["trusted_keys"] = [key.read_text() for key in trust_key]
    if not changes:
        fail("nothing to change")
    show_record(connect().patch(path("importers", name), changes), IMPORTER_FIELDS,
                as_json=as_json)


@importer_app.command("delete")
def delete_importer(name: Name, as_json: JsonFlag = False) -> None:
    """Delete an importer (its imports stay listed)."""
    href = path("importers", name)
    connect().delete(href)
    deleted(f"importer {name}", f"/api/v1/{href}", as_json=as_json)


ServerPath = Annotated[Optional[str], typer.Argument(
    help="On the server: a table of contents (*.toc.json, its chunks beside it) or a "
         "single-stream archive, under its allowed import directories.")]
LocalFile = Annotated[Optional[Path], typer.Option(
    "--file", exists=True, dir_okay=False, help="Instead: a local single-stream archive (from "
                                                "`pallet exporter stream`), uploaded first.")]


@contextlib.contextmanager
def _source(api: Client, server_path: str | None, file: Path | None
            ) -> Iterator[dict[str, Any]]:
    """The request body naming the archive, for the request that hands it to a task. A
    `--file` is uploaded first; the task removes the upload when it ends, and if the
    archive never reaches a task (refused, interrupted), it is removed here."""
    if (server_path is None) == (file is None):
        fail("give the archive's path on the server, or --file with a local archive")
    if server_path is not None:
        yield {"path": server_path}
        return
    size = file.stat().st_size
    upload = api.post("uploads", {"size": size})
    try:
        pieces = list(chunks(missing_ranges([], size), 8 * MiB))
        note(f"uploading {file} ({size_text(size)}) as upload {upload['id']}")
        send(api, upload, file, pieces, 4)
        yield {"upload": upload["id"]}
    except BaseException:
        with contextlib.suppress(ClientError):
            api.delete(path("uploads", upload["id"]))
        raise


def describe_plan(task: dict[str, Any]) -> None:
    plan = task["result"]
    verb = "would import" if plan["dry_run"] else "imported"
    signed = f"signed by key {plan['signed_by']}" if plan["signed_by"] else "not signed"
    say(f"archive {plan['export_id']} from exporter {plan['exporter']} "
        f"({'incremental' if plan['incremental'] else 'full'}, format "
        f"{plan['format_version']}, {signed}): the check passed" if plan["dry_run"] else
        f"archive {plan['export_id']}: {verb}")
    table(plan["repositories"], [
        "source", "destination",
        ("action", lambda r: "up to date" if r["up_to_date"] else
         ("create, " if r["create_repository"] else "") + f"version {r['version']}"),
        ("added", lambda r: r["units_added"]), ("removed", lambda r: r["units_removed"]),
        ("digest", lambda r: r["target_digest"][:16])])
    say(f"{plan['artifacts']} artifacts in the archive, {plan['artifacts_present']} present "
        f"here; {size_text(plan['bytes_to_write'])} to write, "
        f"{size_text(plan['free_bytes'])} free")


@importer_app.command("check")
def check_import(name: Name, server_path: ServerPath = None, file: LocalFile = None,
                 no_wait: NoWait = False, as_json: JsonFlag = False) -> None:
    """Check an archive against this server, changing nothing, and print the plan: each
    repository's new version, units added and removed, bytes to write."""
    api = connect()
    with _source(api, server_path, file) as body:
        task = api.post(path("importers", name, "check"), body)
    report(api, task, no_wait=no_wait, as_json=as_json, describe=describe_plan)


StreamTimeout = Annotated[float, typer.Option(
    min=1, max=7 * 86400, metavar="SECONDS",
    help="With -: fail if the server takes no byte, or sends no answer once the stream has "
         "ended (its import's last step), for this long.")]


@importer_app.command("run")
def run_import(name: Name, server_path: ServerPath = None, file: LocalFile = None,
               read_timeout: StreamTimeout = 600, no_wait: NoWait = False,
               as_json: JsonFlag = False) -> None:
    """Import an archive: every destination gets its new version, or none does. A path of
    `-` streams the archive from standard input (`pallet exporter stream NAME -o - | ssh
    host pallet importer run NAME -`)."""
    api = connect()
    if server_path == "-":
        if file is not None:
            fail("give - or --file, not both")
        task = api.request("POST", path("importers", name, "import-stream"),
                           content=_stdin_blocks(),
                           headers={"Content-Type": "application/x-tar"},
                           timeout=httpx.Timeout(read_timeout, connect=10.0))
        report(api, task, no_wait=False, as_json=as_json,
               describe=describe_plan)
        return
    with _source(api, server_path, file) as body:
        task = api.post(path("importers", name, "import"), body)
    report(api, task, no_wait=no_wait, as_json=as_json, describe=describe_plan)


def _stdin_blocks():
    while block := sys.stdin.buffer.read(MiB):
        yield block


# -- imports --------------------------------------------------------------------------------

@import_app.command("list")
def list_imports(importer: Annotated[Optional[str], typer.Option(
                     help="Only imports of this importer.")] = None,
                 limit: Limit = None, offset: Offset = None, as_json: JsonFlag = False) -> None:
    """List imports, newest first."""
    show_page(connect().page("imports", importer=importer, limit=limit, offset=offset),
              ["id", "importer", "export_id", "incremental", "source", "bytes_written",
               "created_at"], as_json=as_json, noun="import")


@import_app.command("show")
def show_import(import_id: Annotated[int, typer.Argument(help="The import's id.")],
                as_json: JsonFlag = False) -> None:
    """Show an import and the plan it carried out."""
    record = connect().get(path("imports", import_id))
    if as_json:
        emit_json(record)
        return
    describe_plan({"result": record["plan"]})
