"""Writing an archive: members in the order `layout` prescribes, straight into a sink."""

from __future__ import annotations

import contextlib
import json
import os
from typing import Any, BinaryIO, Callable, Iterable

from pallet.content.identity import canonical_json
from pallet.transfer import layout
from pallet.transfer.chunks import Chunk, Sink, StreamSink
from pallet.transfer.tarstream import END, header, padding, write_member

COPY_BLOCK = 1 << 20
SMALL = 256 << 10  # artifacts up to this size are read whole: `small_artifact`


class ArchiveWriter:
    def __init__(self, sink: Sink) -> None:
        self.sink = sink
        self._last_artifact = ""

    def member(self, name: str, data: bytes) -> None:
        write_member(self.sink.write, name, data)

    def header(self, document: dict[str, Any]) -> None:
        self.member(layout.HEADER, canonical_json(document))

    def _next_artifact(self, sha256: str) -> None:
        if sha256 <= self._last_artifact:
            raise ValueError("artifacts must be written once each, by ascending sha256")
        self._last_artifact = sha256

    def small_artifact(self, sha256: str, size: int, data: bytes) -> None:
        """A small artifact's bytes, read whole (one byte more than `size` shows a longer
        file): they go out in one write with their header."""
        self._next_artifact(sha256)
        _check_size(sha256, size, len(data))
        self.sink.write(b"".join((header(layout.artifact_member(sha256), size), data,
                                  padding(size))))

    def artifact(self, sha256: str, size: int, stream: BinaryIO) -> None:
        """An artifact's bytes, exactly `size` of them, from an open stored file."""
        self._next_artifact(sha256)
        self.sink.write(header(layout.artifact_member(sha256), size))
        left = size
        while left:
            block = stream.read(min(COPY_BLOCK, left))
            if not block:
                break
            self.sink.write(block)
            left -= len(block)
        _check_size(sha256, size, size - left + len(stream.read(1)))
        self.sink.write(padding(size))

    def units(self, index: int, units: Iterable[dict[str, Any]]) -> int:
        """Added units of repository `index`, as JSON lines in members of bounded size."""
        return self._lines(index, "added", (json.dumps(u, sort_keys=True,
                                                       separators=(",", ":"),
                                                       ensure_ascii=False) for u in units))

    def removed(self, index: int, digests: Iterable[str]) -> int:
        """Identity digests of the units repository `index` removes."""
        return self._lines(index, "removed", digests)

    def _lines(self, index: int, kind: str, lines: Iterable[str]) -> int:
        batch: list[str] = []
        number = count = 0
        for line in lines:
            batch.append(line)
            if len(batch) == layout.UNITS_PER_MEMBER:
                self.member(layout.units_member(index, kind, number), _text(batch))
                count, number, batch = count + len(batch), number + 1, []
        if batch:
            self.member(layout.units_member(index, kind, number), _text(batch))
            count += len(batch)
        return count

    def finish(self, toc_of: Callable[[list[Chunk]], dict[str, Any]]
               ) -> tuple[list[Chunk], dict[str, Any]]:
        """Close the archive. `toc_of(chunks)` builds the (signed) table of contents; in a
        single stream it goes in as the last member, covering every byte before it."""
        if isinstance(self.sink, StreamSink):
            covered = [Chunk("stream", self.sink.written, self.sink.digest())]
            toc = toc_of(covered)
            self.member(layout.TOC, canonical_json(toc))
            self.sink.write(END)
            self.sink.close()
            return covered, toc
        self.sink.write(END)
        chunks = self.sink.close()
        return chunks, toc_of(chunks)


def _text(lines: list[str]) -> bytes:
    return ("\n".join(lines) + "\n").encode("utf-8")


def _check_size(sha256: str, expected: int, actual: int) -> None:
    if actual != expected:
        raise OSError(f"stored artifact {sha256} has {actual} bytes, its record says "
                      f"{expected}: run a repair")


def write_toc_file(path: os.PathLike, toc: dict[str, Any]) -> None:
    """The table of contents beside the chunks, written whole or not at all."""
    temporary = f"{os.fspath(path)}.tmp"
    with contextlib.suppress(FileNotFoundError):
        os.unlink(temporary)  # never write through whatever was there, a link included
    with open(temporary, "xb") as out:
        out.write(json.dumps(toc, indent=1, sort_keys=True).encode())
        out.flush()
        os.fsync(out.fileno())
    os.replace(temporary, path)
