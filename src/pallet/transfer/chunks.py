"""Where an archive's bytes go and where they come from: chunk files or one stream, each
checksummed on the way.

Writing, a `Sink` takes the archive as one stream and lays it down as numbered chunk files
of a chosen size (or one file), or passes it to a stream (standard output, an HTTP response),
computing every piece's sha256 as it goes. Reading, a `Source` gives the stream back from the
chunk files where they lie (read-only media are fine) or from a stream, and checks every
chunk's size and sha256 the moment its last byte has been read.
"""

from __future__ import annotations

import errno
import glob
import hashlib
import os
import queue
import re
import threading
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Sequence

from pallet.artifacts.storage import fsync_dir, start_writeback
from pallet.artifacts.temporaries import hold_lock, take_abandoned
from pallet.transfer import layout
from pallet.transfer.tarstream import BadArchive

READ_BLOCK = 1 << 20
BUFFER = 1 << 20  # small writes are gathered into blocks of this size
WRITEBACK = 16 << 20  # a chunk's bytes are sent on to the disk every this many


class ParallelSha256:
    """A sha256 computed on a thread of its own, so hashing overlaps the reading and
    writing (hashlib releases the GIL on large updates). Data given must not change."""

    def __init__(self) -> None:
        self._hash = hashlib.sha256()
        self._queue: queue.Queue = queue.Queue(maxsize=8)
        self._thread = threading.Thread(target=self._run, name="sha256", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while (data := self._queue.get()) is not None:
            self._hash.update(data)

    def update(self, data) -> None:
        self._queue.put(data)

    def hexdigest(self) -> str:
        if self._thread.is_alive():
            self._queue.put(None)
            self._thread.join()
        return self._hash.hexdigest()


@dataclass(frozen=True)
class Chunk:
    """A piece of an archive: its file name (or "stream"), size and sha256."""

    name: str
    size: int
    sha256: str

    def as_dict(self) -> dict:
        return {"name": self.name, "size": self.size, "sha256": self.sha256}


class Sink(ABC):
    """Takes an archive's bytes in order; `close()` returns its pieces."""

    written = 0

    @abstractmethod
    def write(self, data: bytes) -> None: ...

    @abstractmethod
    def close(self) -> list[Chunk]: ...

    def abort(self) -> None:
        """Stop after a failure: remove what was written, where that is possible."""

    def release(self) -> None:
        """The export is complete (its table of contents written): forget it."""


class FileSink(Sink):
    """Chunk files `<base>.0000`, `<base>.0001`… of `chunk_size` bytes in `directory`, or one
    file `<base>` when `chunk_size` is None. Each is fsynced when full.

    Chunks are written as `<name>.partial` and renamed when the archive is whole (`close`).
    Until `release()` the sink holds an flock on `.<base>.writing`: the next FileSink in the
    directory finds a killed export's lock free, and removes its partial files, and its
    chunks if no table of contents (`<base without .tar>.toc.json`) was written for them."""

    def __init__(self, directory: Path, base: str, chunk_size: int | None) -> None:
        if chunk_size is not None and chunk_size < 1:
            raise ValueError("chunk_size must be positive")
        self.directory, self.base, self.chunk_size = Path(directory), base, chunk_size
        self.chunks: list[Chunk] = []
        self.paths: list[Path] = []  # partial files until close(), then the chunks
        remove_abandoned(self.directory)
        self._lock = self.directory / f".{base}.writing"
        self._lock_fd: int | None = hold_lock(self._lock)
        self._fd: int | None = None
        self._hash: ParallelSha256 | None = None
        self._in_chunk = 0
        self._buffer = bytearray()

    def _name(self) -> str:
        return self.base if self.chunk_size is None else f"{self.base}.{len(self.chunks):04d}"

    def _open(self) -> None:
        name = self._name()
        if (self.directory / name).exists():
            raise FileExistsError(errno.EEXIST, "a chunk file is there already", name)
        path = self.directory / f"{name}.partial"
        # O_EXCL: never overwrite a file that is there already (an older export, a link).
        self._fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        self.paths.append(path)
        self._hash, self._in_chunk, self._sent = ParallelSha256(), 0, 0

    def _close_chunk(self) -> None:
        os.fsync(self._fd)
        os.close(self._fd)
        self._fd = None
        self.chunks.append(Chunk(self._name(), self._in_chunk, self._hash.hexdigest()))

    def write(self, data: bytes) -> None:
        if len(data) >= BUFFER and not self._buffer:
            self._put(data)
            return
        self._buffer += data
        if len(self._buffer) >= BUFFER:
            self._flush()

    def _flush(self) -> None:
        if self._buffer:
            data, self._buffer = bytes(self._buffer), bytearray()
            self._put(data)

    def _put(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            if self._fd is None:
                self._open()
            room = len(view) if self.chunk_size is None else self.chunk_size - self._in_chunk
            piece = view[:room]
            self._hash.update(piece)
            while piece:
                done = os.write(self._fd, piece)
                piece = piece[done:]
            taken = min(room, len(view))
            self._in_chunk += taken
            if self._in_chunk - self._sent >= WRITEBACK:
                start_writeback(self._fd, self._sent, self._in_chunk - self._sent)
                self._sent = self._in_chunk
            self.written += taken
            view = view[taken:]
            if self.chunk_size is not None and self._in_chunk == self.chunk_size:
                self._close_chunk()

    def close(self) -> list[Chunk]:
        self._flush()
        if self._fd is None and not self.chunks:
            self._open()  # an empty archive is still one file
        if self._fd is not None:
            self._close_chunk()
        finals = [self.directory / chunk.name for chunk in self.chunks]
        for number, final in enumerate(finals):
            if final.exists():  # rename would replace it
                raise FileExistsError(errno.EEXIST, "a chunk file is there already", final.name)
            os.rename(self.paths[number], final)
            self.paths[number] = final
        fsync_dir(self.directory)
        return list(self.chunks)

    def release(self) -> None:
        if self._lock_fd is not None:
            self._lock.unlink(missing_ok=True)
            os.close(self._lock_fd)
            self._lock_fd = None

    def abort(self) -> None:
        self._buffer = bytearray()
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
        if self._hash is not None:
            self._hash.hexdigest()  # let its thread end
        for path in self.paths:
            path.unlink(missing_ok=True)
        self.release()


def remove_abandoned(directory: Path) -> None:
    """Remove what killed exports left in `directory`: each lock no process holds, its
    partial files, and its chunks if their table of contents was never written."""
    for lock in directory.glob(".*.writing"):
        if (fd := take_abandoned(lock)) is None:  # being written
            continue
        try:
            base = lock.name[1:-len(".writing")]
            toc = directory / f"{base.removesuffix('.tar')}{layout.TOC_FILE_SUFFIX}"
            chunk = re.compile(re.escape(base) + r"(\.\d{4})?(\.partial)?")
            for path in directory.glob(f"{glob.escape(base)}*"):
                if chunk.fullmatch(path.name) and (path.name.endswith(".partial")
                                                   or not toc.exists()):
                    path.unlink(missing_ok=True)
            lock.unlink(missing_ok=True)
        finally:
            os.close(fd)


class StreamSink(Sink):
    """The whole archive to one binary stream, as a single piece named "stream"."""

    def __init__(self, stream: BinaryIO) -> None:
        self.stream = stream
        self._hash = hashlib.sha256()

    def write(self, data: bytes) -> None:
        self._hash.update(data)
        self.stream.write(data)
        self.written += len(data)

    def digest(self) -> str:
        """The sha256 of everything written so far."""
        return self._hash.hexdigest()

    def close(self) -> list[Chunk]:
        self.stream.flush()
        return [Chunk("stream", self.written, self._hash.hexdigest())]


class Source(ABC):
    """An archive's bytes in order. `read(n)` returns n bytes unless the archive ends.

    `chunk` is the piece the last byte read came from; `vouched`, how many leading pieces
    are vouched for: chunk files once they match their checksum. A stream's one piece is
    vouched for as it is read: its checksum, in the table of contents it ends with, comes too
    late to hold its bytes back, and an importer that requires a signature verifies a stream
    whole before it imports it."""

    chunk = 0
    vouched = 1

    @abstractmethod
    def read(self, n: int) -> bytes: ...

    def finish(self) -> None:
        """Check that nothing is left over and every chunk was whole and right."""

    def close(self) -> None:
        pass


class ChunkSource(Source):
    """Chunk files read in place, each checked against its expected size and sha256."""

    def __init__(self, directory: Path, chunks: Sequence[Chunk]) -> None:
        self.directory, self.chunks = Path(directory), list(chunks)
        self.paths = [self.directory / chunk.name for chunk in self.chunks]
        self.check_present()
        self._index = -1
        self._file: BinaryIO | None = None
        self._left = 0  # bytes of the current chunk file not yet read
        self._hash: ParallelSha256 | None = None
        self._block, self._offset = b"", 0
        self.vouched = 0

    def check_present(self) -> None:
        """Every chunk is there as a regular file of its expected size."""
        for chunk, path in zip(self.chunks, self.paths):
            try:
                stat = path.lstat()
            except FileNotFoundError:
                raise BadArchive(f"chunk {chunk.name} is missing from {self.directory}",
                                 code="chunk_missing", details={"chunk": chunk.name}) from None
            if not path.is_file() or path.is_symlink():
                raise BadArchive(f"chunk {chunk.name} is not a regular file",
                                 details={"chunk": chunk.name})
            if stat.st_size != chunk.size:
                raise BadArchive(f"chunk {chunk.name} has {stat.st_size} bytes, the table of "
                                 f"contents says {chunk.size}: it is truncated or damaged",
                                 code="chunk_size", details={"chunk": chunk.name})

    def _next_chunk(self) -> bool:
        self._end_chunk()
        self._index += 1
        if self._index >= len(self.chunks):
            return False
        self._file = open(self.paths[self._index], "rb", buffering=0)
        self.chunk = self._index
        self._left = self.chunks[self._index].size
        self._hash = ParallelSha256()
        return True

    def _end_chunk(self) -> None:
        if self._file is None:
            return
        extra = self._file.read(1)
        self._file.close()
        self._file = None
        chunk = self.chunks[self._index]
        if self._left or extra:
            raise BadArchive(f"chunk {chunk.name} changed size while it was read",
                             code="chunk_size", details={"chunk": chunk.name})
        actual = self._hash.hexdigest()
        if actual != chunk.sha256:
            raise BadArchive(f"chunk {chunk.name} has sha256 {actual}, the table of contents "
                             f"says {chunk.sha256}: it is damaged or was altered",
                             code="chunk_checksum", details={"chunk": chunk.name})
        self.vouched = self._index + 1

    def _refill(self) -> bool:
        """The next block of the archive into the buffer; False at its end."""
        while self._file is None or not self._left:
            if not self._next_chunk():
                return False
        block = self._file.read(min(READ_BLOCK, self._left))
        if not block:
            raise BadArchive(f"chunk {self.chunks[self._index].name} ended early",
                             code="chunk_size")
        self._hash.update(block)
        self._left -= len(block)
        self._block, self._offset = block, 0
        return True

    def read(self, n: int) -> bytes:
        parts = []
        while n > 0:
            if self._offset == len(self._block) and not self._refill():
                break
            if self._offset == 0 and n >= len(self._block):
                data = self._block  # a whole block: no copy
            else:
                data = self._block[self._offset:self._offset + n]
            self._offset += len(data)
            n -= len(data)
            parts.append(data)
        return b"".join(parts) if len(parts) != 1 else parts[0]

    def finish(self) -> None:
        """The archive's end was reached: every chunk must be read whole and be right."""
        if self._offset < len(self._block) or (self._file is not None and self._left):
            name = self.chunks[self._index].name
            raise BadArchive(f"chunk {name} holds bytes after the archive's end",
                             details={"chunk": name})
        self._end_chunk()
        if self._index < len(self.chunks) - 1:
            rest = self.chunks[self._index + 1].name
            raise BadArchive(f"the archive ends before chunk {rest}: the chunks are out of "
                             "order or do not belong together", details={"chunk": rest})

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
        if self._hash is not None:
            self._hash.hexdigest()  # let its thread end


class StreamSource(Source):
    """An archive read from a stream (standard input, an upload), hashed as it goes."""

    def __init__(self, stream: BinaryIO) -> None:
        self.stream = stream
        self._hash = hashlib.sha256()
        self.read_bytes = 0

    def read(self, n: int) -> bytes:
        parts, want = [], n
        while want > 0:
            data = self.stream.read(want)
            if not data:
                break
            parts.append(data)
            want -= len(data)
        data = b"".join(parts)
        self._hash.update(data)
        self.read_bytes += len(data)
        return data

    def finish(self) -> None:
        if self.stream.read(1):
            raise BadArchive("the stream holds bytes after the archive's end")

    def mark(self) -> tuple[int, str]:
        """(bytes read, their sha256) so far."""
        return self.read_bytes, self._hash.hexdigest()

    def close(self) -> None:
        pass
