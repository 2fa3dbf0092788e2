"""A single-stream archive written straight into an HTTP response, on a thread of its own.

The exporting thread reads one database snapshot and writes the archive into a bounded pipe;
the response drains the pipe. Nothing touches the server's disk, and a failure after the
first byte aborts the response, so a client never takes a cut archive for a whole one.
"""

from __future__ import annotations

import contextlib
import queue
import threading
import time
from typing import Callable, Iterator

from fastapi.responses import StreamingResponse
from sqlalchemy.orm import Session

from pallet.runtime import Runtime
from pallet.transfer import export as exporting
from pallet.transfer.chunks import Chunk, StreamSink
from pallet.transfer.tasks import PreparedExport

STALLED_SECONDS = 300  # a streamed export whose client reads nothing for this long stops

Prepare = Callable[[Session], PreparedExport]
Record = Callable[[Session, PreparedExport, list[Chunk], float], None]
Choose = Callable[[Session], list[exporting.Selection]]


class ArchiveBlocks:
    """The blocks of an archive being written; `close()` stops the writer even if nobody
    started reading (a request that failed before sending its body)."""

    def __init__(self, pipe: "Pipe", first) -> None:
        self.pipe, self.first = pipe, first

    def __iter__(self) -> Iterator[bytes]:
        return self.pipe.drain(self.first)

    def close(self) -> None:
        self.pipe.closed.set()


def archive_blocks(runtime: Runtime, prepare: Prepare, *, record: Record | None = None,
                   fetch: Choose | None = None, progress: exporting.Progress | None = None,
                   name: str = "stream") -> ArchiveBlocks:
    """The archive `prepare(session)` describes, as blocks of bytes, written on a thread of
    its own; `record` it once the last byte is out. With `fetch`, the files of the units
    `fetch(session)` selects whose bytes are not stored are fetched from their remotes
    first. An error before the first byte (a bad request, a file no remote delivers) is
    raised here; a later one breaks the iteration."""
    pipe = Pipe()
    thread = threading.Thread(target=_produce, args=(runtime, prepare, record, fetch,
                                                     progress, pipe),
                              name=f"export-{name}", daemon=True)
    thread.start()
    first = pipe.get()
    if isinstance(first, BaseException):
        raise first
    return ArchiveBlocks(pipe, first)


def stream_archive(runtime: Runtime, prepare: Prepare, *, record: Record | None = None,
                   fetch: Choose | None = None, filename: str = "export.tar"
                   ) -> StreamingResponse:
    """Answer with the archive as the response body."""
    blocks = archive_blocks(runtime, prepare, record=record, fetch=fetch, name=filename)
    return StreamingResponse(blocks, media_type="application/x-tar",
                             headers={"Content-Disposition":
                                      f'attachment; filename="{filename}"'})


class Pipe:
    """Bytes from the exporting thread to the response, a bounded queue between them."""

    def __init__(self) -> None:
        self.items: queue.Queue = queue.Queue(maxsize=16)
        self.closed = threading.Event()
        self._buffer: list[bytes] = []
        self._size = 0

    def write(self, data: bytes) -> None:  # the sink's stream
        if self.closed.is_set():
            raise ConnectionError("the client went away")
        self._buffer.append(bytes(data))
        self._size += len(data)
        if self._size >= 1 << 20:
            self.flush()

    def flush(self) -> None:
        if self._buffer:
            self.put(b"".join(self._buffer))
            self._buffer, self._size = [], 0

    def put(self, item) -> None:
        deadline = time.monotonic() + STALLED_SECONDS
        while not self.closed.is_set():
            try:
                self.items.put(item, timeout=0.5)
                return
            except queue.Full:
                if time.monotonic() > deadline:  # nobody reads any more: give up
                    self.closed.set()
        raise ConnectionError("the client stopped reading the export")

    def get(self):
        return self.items.get()

    def drain(self, first) -> Iterator[bytes]:
        try:
            item = first
            while item is not None:
                if isinstance(item, BaseException):
                    # Abort the response: the client sees a broken transfer, never a
                    # complete-looking one (and an importer would find it truncated).
                    raise ConnectionAbortedError("the export failed while streaming") from item
                yield item
                item = self.items.get()
        finally:
            self.closed.set()


def _produce(runtime: Runtime, prepare: Prepare, record: Record | None,
             fetch: Choose | None, progress: exporting.Progress | None, pipe: Pipe) -> None:
    started = time.monotonic()
    try:
        if fetch is not None:  # before the snapshot, so that it sees what was fetched
            exporting.fetch_missing(runtime, fetch, progress or exporting.no_progress)
        with runtime.db.snapshot() as session:
            prepared = prepare(session)
            pipe.put(b"")  # ready: the response may start
            chunks, _ = exporting.write_archive(session, runtime.storage, prepared.chosen,
                                                prepared.document, StreamSink(pipe),
                                                private_key=prepared.private_key)
            pipe.flush()
        if record is not None:
            with runtime.db.write() as session:
                record(session, prepared, chunks, time.monotonic() - started)
        pipe.put(None)
    except BaseException as exc:  # reported before the first byte, or ends the stream short
        with contextlib.suppress(ConnectionError):  # unless nobody listens any more
            pipe.put(exc)
