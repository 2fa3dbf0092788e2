"""`pallet upload ...`: send a local file in chunks, in parallel and resumably; it becomes an
artifact, then a content unit, then part of a repository's new version."""

from __future__ import annotations

import hashlib
import os
import shlex
import threading
from concurrent.futures import FIRST_EXCEPTION, Future, ThreadPoolExecutor, wait
from pathlib import Path
from typing import Annotated, Any, Iterator

import typer
from rich.progress import DownloadColumn, Progress, TaskID, TransferSpeedColumn

from pallet.cli.client import Client, ClientError, Limit, Offset, connect, path
from pallet.cli.content import describe_unit
from pallet.cli.repository import describe_modify
from pallet.cli.output import (JsonFlag, deleted, emit_json, fail, note, say, show_page,
                               show_record)
from pallet.cli.task import check, progress_bar, wait_for
from pallet.content.service import validate_unit
from pallet.errors import PalletError
from pallet.plugins import Registry
from pallet.plugins.file import plugin as file_plugin

MiB = 2**20
BLOCK = MiB  # bytes hashed at a time

app = typer.Typer(help="Uploads: files sent in chunks, which become artifacts.",
                  no_args_is_help=True)

UploadId = Annotated[int, typer.Argument(help="The upload's id.")]


def missing_ranges(received: list[list[int]], size: int) -> list[tuple[int, int]]:
    """The inclusive byte ranges of a `size`-byte file not among the `received` ones."""
    gaps, position = [], 0
    for start, end in sorted(received):
        if start > position:
            gaps.append((position, start - 1))
        position = max(position, end + 1)
    if position < size:
        gaps.append((position, size - 1))
    return gaps


def chunks(ranges: list[tuple[int, int]], chunk_size: int) -> Iterator[tuple[int, int]]:
    for start, end in ranges:
        for first in range(start, end + 1, chunk_size):
            yield first, min(first + chunk_size - 1, end)


def _put_chunk(api: Client, upload: dict[str, Any], fd: int, start: int, end: int) -> int:
    data = os.pread(fd, end - start + 1, start)
    if len(data) != end - start + 1:
        raise ClientError("the file became shorter while it was being uploaded")
    api.request("PUT", upload["href"], content=data,
                headers={"Content-Type": "application/octet-stream",
                         "Content-Range": f"bytes {start}-{end}/{upload['size']}"})
    return len(data)


def _sha256(file: Path, bar: Progress, row: TaskID, failed: threading.Event) -> str:
    """The file's sha256; cut short (its value then meaningless) once a chunk failed."""
    digest = hashlib.sha256()
    with open(file, "rb") as stream:
        while not failed.is_set() and (block := stream.read(BLOCK)):
            digest.update(block)
            bar.advance(row, len(block))
    return digest.hexdigest()


def _advance(bar: Progress, row: TaskID, failed: threading.Event, future: Future) -> None:
    if future.cancelled() or future.exception() is not None:
        failed.set()
    else:
        bar.advance(row, future.result())


def send(api: Client, upload: dict[str, Any], file: Path, pieces: list[tuple[int, int]],
         parallel: int) -> str:
    """Send the pieces with `parallel` threads while hashing the whole file; its sha256."""
    pool = ThreadPoolExecutor(parallel, thread_name_prefix="upload")
    failed = threading.Event()
    with open(file, "rb") as stream, progress_bar(DownloadColumn(), TransferSpeedColumn()) as bar:
        sending = bar.add_task("sending", total=sum(end - start + 1 for start, end in pieces))
        hashing = bar.add_task("hashing", total=upload["size"])
        try:
            futures = [pool.submit(_put_chunk, api, upload, stream.fileno(), start, end)
                       for start, end in pieces]
            for future in futures:
                future.add_done_callback(lambda f: _advance(bar, sending, failed, f))
            digest = _sha256(file, bar, hashing, failed)
            done, _ = wait(futures, return_when=FIRST_EXCEPTION)
            for future in done:
                future.result()
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
    return digest


def _open_upload(api: Client, size: int, resume: int | None) -> dict[str, Any]:
    if resume is None:
        return api.post("uploads", {"size": size})
    upload = api.get(path("uploads", resume))
    if upload["size"] != size:
        fail(f"upload {resume} is for a file of {upload['size']} bytes; this one has {size}")
    return upload


def upload_and_commit(api: Client, file: Path, commit: dict[str, Any], *, chunk_size: int,
                      parallel: int, resume: int | None, command: list[str]) -> dict[str, Any]:
    """Upload the file, then commit it with `commit` (what else the commit task makes: its
    unit, its version) and wait: the finished task. `command`: this command's name and its
    options but the file, for the hint that resumes it."""
    upload = _open_upload(api, file.stat().st_size, resume)
    pieces = list(chunks(missing_ranges(upload["received"], upload["size"]), chunk_size))
    missing = sum(end - start + 1 for start, end in pieces)
    note(f"upload {upload['id']}: sending {missing} of {upload['size']} bytes in "
         f"{len(pieces)} chunks")
    again = ["pallet", "upload", *command[:1], str(file), "--resume", str(upload["id"]),
             *command[1:]]
    hint = f"resume with `{shlex.join(again)}`"
    try:
        digest = send(api, upload, file, pieces, parallel)
        task = api.post(path("uploads", upload["id"], "commit"), {"sha256": digest, **commit})
    except ClientError as exc:  # a refused commit too: the bytes stay, resuming sends none
        raise ClientError(f"{exc.message}; {hint}") from None
    except KeyboardInterrupt:
        note(f"interrupted; {hint}")
        raise typer.Exit(130) from None
    # From here the server finishes alone: Ctrl-C stops only the waiting.
    return check(wait_for(api, task))


def check_relative_path(relative_path: str) -> None:
    """Refuse a unit path here, before any byte is sent, with the `file` type's own unit
    model (the one the server validates with), whatever rules it has."""
    registry = Registry()
    registry.add(file_plugin)
    try:  # any well-formed digest: only the path is in question here
        validate_unit(registry, "file", {"relative_path": relative_path, "sha256": "0" * 64})
    except PalletError as exc:
        fail(exc.message)


ChunkSize = Annotated[int, typer.Option(min=1, help="Bytes per chunk.")]
Parallel = Annotated[int, typer.Option(min=1, max=64, help="Chunks sent at the same time.")]
Resume = Annotated[int | None, typer.Option(
    metavar="UPLOAD_ID", help="Continue an interrupted upload: send only the bytes the "
                              "server lacks.")]


@app.command("file")
def upload_file(ctx: typer.Context,
                file: Annotated[Path, typer.Argument(
                    exists=True, dir_okay=False, readable=True, help="The local file.")],
                relative_path: Annotated[str | None, typer.Option(
                    help="The unit's path in repositories (default: the file's name).")] = None,
                repository: Annotated[str | None, typer.Option(
                    help="Add the unit to this repository: a new version.")] = None,
                chunk_size: ChunkSize = 8 * MiB, parallel: Parallel = 4,
                resume: Resume = None,
                artifact_only: Annotated[bool, typer.Option(
                    "--artifact-only", help="Stop once the file is a stored artifact; make "
                                            "no content unit.")] = False,
                as_json: JsonFlag = False) -> None:
    """Upload a file: an artifact, a file content unit, and optionally a new repository
    version holding it, all made by one server task once the bytes are sent. Ctrl-C while
    it waits stops only the waiting."""
    if artifact_only and repository:
        fail("--artifact-only makes no content unit to add to --repository")
    commit: dict[str, Any] = {}
    if not artifact_only:
        commit["relative_path"] = relative_path or file.name
        check_relative_path(commit["relative_path"])
    upload_into(ctx, file, commit, repository, chunk_size=chunk_size, parallel=parallel,
                resume=resume, as_json=as_json)


@app.command("rpm")
def upload_rpm(ctx: typer.Context,
               file: Annotated[Path, typer.Argument(
                   exists=True, dir_okay=False, readable=True, help="The local .rpm file.")],
               repository: Annotated[str | None, typer.Option(
                   help="Add the package to this rpm repository: a new version.")] = None,
               chunk_size: ChunkSize = 8 * MiB, parallel: Parallel = 4,
               resume: Resume = None,
               as_json: JsonFlag = False) -> None:
    """Upload an RPM package: the server reads its name, version, dependencies and files
    from the package header (an artifact, an rpm.package unit, and optionally a new
    repository version, made by one server task). Ctrl-C while it waits stops only the
    waiting."""
    upload_into(ctx, file, {"type": "rpm.package"}, repository, chunk_size=chunk_size,
                parallel=parallel, resume=resume, as_json=as_json)


def upload_into(ctx: typer.Context, file: Path, commit: dict[str, Any],
                repository: str | None, *, chunk_size: int, parallel: int,
                resume: int | None, as_json: bool) -> None:
    """Upload `file` and commit it with `commit` (and into `repository`, checked before any
    byte is sent); then say what the commit made: its artifact, unit and version."""
    api = connect()
    if repository:
        api.get(path("repositories", repository))  # fail before sending any byte
        commit = {**commit, "repository": repository}
    task = upload_and_commit(api, file, commit, chunk_size=chunk_size, parallel=parallel,
                             resume=resume,
                             command=[ctx.info_name,
                                      *given_options(ctx, leave_out=("file", "resume"))])
    result = task["result"]
    artifact = {key: result[key] for key in ("artifact", "sha256", "size")}
    unit = api.get(path("content", result["content"])) if "content" in result else None
    if as_json:
        emit_json({"artifact": artifact, "content": unit, "task": task})
        return
    say(f"uploaded {file.name}: {artifact['size']} bytes, sha256 {artifact['sha256']}, "
        f"artifact {artifact['artifact']}")
    if unit is not None:
        describe_unit(unit)
    if repository:
        describe_modify(repository)(task)


def given_options(ctx: typer.Context, *, leave_out: tuple[str, ...]) -> list[str]:
    """The options of this command that were given on its command line, as given (so a
    hint can repeat the command; an option added later is repeated too)."""
    options: list[str] = []
    for param in ctx.command.params:
        # By name: Typer may bring its own copy of click, with its own classes.
        source = ctx.get_parameter_source(param.name)
        if (param.name in leave_out or param.param_type_name != "option"
                or source is None or source.name != "COMMANDLINE"):
            continue
        value = ctx.params[param.name]
        if param.is_flag:
            options += [param.opts[0]] if value else list(param.secondary_opts[:1])
        else:
            options += [param.opts[0], str(value)]
    return options


COLUMNS = ["id", "size", "received_bytes", "complete", "created_by", "created_at"]


@app.command("list")
def list_uploads(limit: Limit = None, offset: Offset = None, as_json: JsonFlag = False) -> None:
    """List uploads not yet committed."""
    body = connect().page("uploads", limit=limit, offset=offset)
    show_page(body, COLUMNS, as_json=as_json, noun="upload")


@app.command("show")
def show_upload(upload_id: UploadId, as_json: JsonFlag = False) -> None:
    """Show an upload and the byte ranges received so far."""
    show_record(connect().get(path("uploads", upload_id)), COLUMNS + ["received", "href"],
                as_json=as_json)


@app.command("delete")
def delete_upload(upload_id: UploadId, as_json: JsonFlag = False) -> None:
    """Delete an upload and the bytes received."""
    href = path("uploads", upload_id)
    connect().delete(href)
    deleted(f"upload {upload_id}", f"/api/v1/{href}", as_json=as_json)
