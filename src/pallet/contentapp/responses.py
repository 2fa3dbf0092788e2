"""What a path resolves to, with its response headers built once (cached entries answer
without work), and how file bytes go out: from memory for small files, through the server's
zero-copy extension when it offers one, else in large reads off the event loop.

Stored bytes that are not the recorded ones are refused before the headers go out, as
affordably as each path allows: a small file is hashed whole when it is read into the bytes
cache (once; about 40 µs for 64 KiB), a large one only has its size compared with the
recorded size (one fstat on a file being opened anyway; hashing it would cost more than
sending it). Bytes damaged in place at the same size are found by `repair`, not here."""

from __future__ import annotations

import asyncio
import hashlib
import os
from concurrent.futures import Executor
from dataclasses import dataclass, field

from pallet.contentapp.http import content_type, etag, http_date
from pallet.contentapp.lookup import Generated

SMALL_FILE = 64 << 10  # files up to this size are kept in memory once read
READ_BLOCK = 1 << 20
ENTRY_COST = 1024  # about what a cached entry takes in memory, for the cache's bound

Headers = list[tuple[bytes, bytes]]
TEXT = b"text/plain; charset=utf-8"
HTML = b"text/html; charset=utf-8"


@dataclass(slots=True, eq=False)
class FileEntry:
    """Stored bytes: an artifact of the store, at `fs_path`."""

    fs_path: str
    sha256: str
    size: int
    last_modified: float
    cache_control: bytes
    valid_until: float | None
    tag: bytes = b""
    headers: Headers = field(default_factory=list)  # of a 200
    cost: int = ENTRY_COST

    @classmethod
    def build(cls, *, fs_path: str, sha256: str, size: int, name: str, last_modified: float,
              cache_control: bytes, valid_until: float | None) -> "FileEntry":
        entry = cls(fs_path, sha256, size, last_modified, cache_control, valid_until)
        entry.tag = etag(sha256)
        entry.headers = [(b"content-length", str(size).encode()),
                         (b"content-type", content_type(name)),
                         (b"accept-ranges", b"bytes"), (b"etag", entry.tag),
                         (b"last-modified", http_date(last_modified)),
                         (b"cache-control", cache_control)]
        return entry

    def resized(self, size: int) -> "FileEntry":
        """The same file with its size as found in the store (for files whose size the
        database did not know)."""
        entry = FileEntry(self.fs_path, self.sha256, size, self.last_modified,
                          self.cache_control, self.valid_until, self.tag)
        entry.headers = [(b"content-length", str(size).encode()), *self.headers[1:]]
        return entry

    def validators(self) -> Headers:
        """The headers a 304 repeats."""
        return [h for h in self.headers if h[0] in (b"etag", b"last-modified", b"cache-control")]

    def partial(self, first: int, last: int) -> Headers:
        headers = [(b"content-length", str(last - first + 1).encode()),
                   (b"content-range", f"bytes {first}-{last}/{self.size}".encode())]
        return headers + self.headers[1:]


@dataclass(slots=True, eq=False)
class RemoteEntry:
    """A content file whose bytes are not stored: fetched from a remote when asked for,
    unless they reached the store in the meantime (then `stored` serves them)."""

    content_artifact_id: int
    stored: FileEntry
    size: int | None
    valid_until: float | None
    cost: int = ENTRY_COST


@dataclass(slots=True, eq=False)
class PageEntry:
    """A generated page: a directory listing."""

    body: bytes
    valid_until: float | None = None
    headers: Headers = field(default_factory=list)
    cost: int = ENTRY_COST

    def __post_init__(self) -> None:
        self.headers = [(b"content-length", str(len(self.body)).encode()),
                        (b"content-type", HTML), (b"cache-control", b"public, max-age=60")]
        self.cost = ENTRY_COST + len(self.body)


@dataclass(slots=True, eq=False)
class GeneratedEntry:
    """A file the repository type writes at request time (`pallet.plugin.GeneratedFile`):
    the look-up is cached, the bytes are made for each request's URL."""

    generated: Generated
    base_path: str
    media_type: bytes
    valid_until: float | None = None
    cost: int = ENTRY_COST


@dataclass(slots=True, eq=False)
class RedirectEntry:
    location: bytes
    valid_until: float | None = None
    cost: int = ENTRY_COST


@dataclass(slots=True, eq=False)
class MissingEntry:
    valid_until: float | None = None
    cost: int = ENTRY_COST


MISSING = MissingEntry()


async def send_plain(send, status: int, message: str, headers: Headers = (),
                     *, head: bool = False) -> None:
    body = (message + "\n").encode("utf-8")
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-length", str(len(body)).encode()),
                            (b"content-type", TEXT), *headers]})
    await send({"type": "http.response.body", "body": b"" if head else body})


async def send_body(send, status: int, headers: Headers, body: bytes) -> None:
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def stored_size(path: str) -> int | None:
    try:
        return os.stat(path).st_size
    except FileNotFoundError:
        return None


class Damaged(Exception):
    """The stored bytes are not the ones recorded under the artifact's digest."""


def read_verified(path: str, sha256: str, size: int) -> bytes:
    """A small stored file's bytes, whole, if they are the recorded ones; else Damaged."""
    with open(path, "rb") as stream:
        data = stream.read(size + 1)
    if len(data) != size:
        raise Damaged(f"{len(data)} bytes stored, {size} recorded")
    if hashlib.sha256(data).hexdigest() != sha256:
        raise Damaged("the stored bytes do not have the recorded sha256")
    return data


def check_size(stored: int, entry: "FileEntry") -> None:
    if stored != entry.size:
        raise Damaged(f"{stored} bytes stored, {entry.size} recorded")


async def send_file(scope, receive, send, io: Executor, entry: FileEntry, status: int,
                    headers: Headers, first: int, length: int) -> None:
    """Send `length` bytes of a large stored file from `first`. The file is opened (and its
    size checked) before the headers go out, so a file missing from the store raises
    FileNotFoundError, and one of the wrong size Damaged, while a proper error can still be
    answered."""
    loop = asyncio.get_running_loop()
    extensions = scope.get("extensions") or {}
    if "http.response.zerocopysend" in extensions:
        stream = await loop.run_in_executor(io, open, entry.fs_path, "rb")
        try:
            check_size(os.fstat(stream.fileno()).st_size, entry)
            await send({"type": "http.response.start", "status": status, "headers": headers})
            await send({"type": "http.response.zerocopysend", "file": stream,
                        "offset": first, "count": length})
        finally:
            stream.close()
        return
    if "http.response.pathsend" in extensions and length == entry.size:
        check_size((await loop.run_in_executor(io, os.stat, entry.fs_path)).st_size, entry)
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.pathsend", "path": entry.fs_path})
        return
    fd = await loop.run_in_executor(io, os.open, entry.fs_path, os.O_RDONLY)
    try:
        check_size(os.fstat(fd).st_size, entry)
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await _stream(receive, send, loop, io, fd, first, length)
    finally:
        os.close(fd)


async def _stream(receive, send, loop, io: Executor, fd: int, offset: int, length: int
                  ) -> None:
    """Read ahead one block while the previous one is sent; stop when the client leaves."""
    gone = asyncio.Event()
    watcher = asyncio.ensure_future(_watch_disconnect(receive, gone))
    pending = loop.run_in_executor(io, os.pread, fd, min(READ_BLOCK, length), offset)
    try:
        while length > 0:
            block = await pending
            pending = None
            if not block:
                raise OSError(f"the stored file ended {length} bytes early")
            length -= len(block)
            offset += len(block)
            if length > 0:
                pending = loop.run_in_executor(io, os.pread, fd, min(READ_BLOCK, length),
                                               offset)
            if gone.is_set():
                return
            await send({"type": "http.response.body", "body": block, "more_body": length > 0})
    finally:
        watcher.cancel()
        if pending is not None:  # the descriptor must not close under a running read
            await asyncio.gather(pending, return_exceptions=True)


async def _watch_disconnect(receive, gone: asyncio.Event) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass
    gone.set()
