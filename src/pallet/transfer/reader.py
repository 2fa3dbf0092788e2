"""Reading an archive: the members in the one order `layout` allows, each checked.

`open_files` reads chunk files in place from the table of contents beside them; `open_stream`
reads a single stream whose table of contents is its last member. Either way the caller walks
the archive once: `header()`, then `artifacts()` (reading each one's bytes before the next),
then `repository_units()`, then `finish()`, which checks the checksums of what remains and
returns the table of contents. Nothing is extracted anywhere; member names are only matched
against the format's grammar, so a path, link or device in an archive is refused by name.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, Iterator

from pallet.transfer import foreign, layout
from pallet.transfer.chunks import Chunk, ChunkSource, Source, StreamSource
from pallet.transfer.tarstream import BLOCK, BadArchive, Member, TarReader


def read_toc_file(path: Path) -> dict[str, Any]:
    """A table of contents file, decoded (not yet verified)."""
    try:
        if path.stat().st_size > layout.MAX_TOC_SIZE:
            raise BadArchive(f"{path.name} is too large to be a table of contents")
        data = path.read_bytes()
    except FileNotFoundError:
        raise BadArchive(f"there is no table of contents at {path}", code="not_found") from None
    except OSError as exc:
        raise BadArchive(f"{path.name} cannot be read: {exc.strerror}") from None
    try:
        return layout.decode_json(data, path.name, layout.MAX_TOC_SIZE)
    except BadArchive as exc:
        raise BadArchive(f"{path.name} is not a table of contents: {exc.message}") from None


@dataclass
class ArtifactMember:
    sha256: str
    size: int
    tar: TarReader

    def read(self, n: int) -> bytes:
        return self.tar.read(n)


@dataclass
class UnitsMember:
    index: int
    kind: str  # "added" or "removed"
    lines: list  # added: decoded unit objects; removed: identity digests


class ArchiveReader:
    def __init__(self, source: Source, toc: dict[str, Any] | None) -> None:
        self.source, self.toc = source, toc
        self.tar = TarReader(self._read)
        self._head = b""  # the first block: it names what a file that is no archive is
        self._pending: Member | None = None
        self._header: layout.Header | None = None
        self._streamed = toc is None
        self.artifact_count = self.artifact_bytes = 0
        self.unit_counts: dict[tuple[int, str], int] = {}

    # -- walking the members ------------------------------------------------------------------

    def _read(self, n: int) -> bytes:
        data = self.source.read(n)
        if len(self._head) < BLOCK:
            self._head += data[:BLOCK - len(self._head)]
        return data

    def _peek(self) -> Member | None:
        if self._pending is None and not self.tar.ended:
            mark = self.source.mark() if self._streamed else None
            self._pending = self.tar.next()
            self._mark = mark
        return self._pending

    def _take(self) -> Member:
        member = self._peek()
        self._pending = None
        return member

    def header(self) -> layout.Header:
        try:
            member = self._peek()
        except BadArchive as exc:
            if exc.code not in ("bad_archive", "truncated"):  # a chunk's own error
                raise
            raise foreign.identify(self._head) or exc from None
        if member is not None and (other := foreign.first_member(member.name)):
            raise other
        if member is None or member.name != layout.HEADER:
            found = "nothing" if member is None else repr(member.name[:120])
            raise BadArchive(f"the archive must begin with {layout.HEADER}, not {found}: "
                             "it is not a Pallet archive, or its first chunk is missing")
        self._take()
        document = _json(self.tar.read_all(layout.MAX_HEADER_SIZE, layout.HEADER),
                         layout.HEADER, layout.MAX_HEADER_SIZE)
        self._header = layout.parse(layout.Header, document, "header")
        self._header_document = document
        if [entry.index for entry in self._header.repositories] != \
                list(range(len(self._header.repositories))):
            raise BadArchive("the header's repositories must be numbered 0, 1, 2… in order")
        if self.toc is not None and self.toc.get("summary") != document:
            raise BadArchive("the archive's header differs from the summary in its table of "
                             "contents: they do not belong together, or one was altered")
        return self._header

    def artifacts(self) -> Iterator[ArtifactMember]:
        """Each artifact member in turn; read its bytes before asking for the next."""
        last = ""
        while (member := self._peek()) is not None:
            match = layout.ARTIFACT.match(member.name)
            if not match:
                if layout.UNITS.match(member.name) or member.name == layout.TOC:
                    break
                raise _stranger(member)
            self._take()
            sha256 = match.group(1)
            if sha256 <= last:
                raise BadArchive(f"artifact {sha256} appears twice or out of order",
                                 details={"member": member.name})
            last = sha256
            self.artifact_count += 1
            self.artifact_bytes += member.size
            if (self.artifact_count > self._header.artifacts
                    or self.artifact_bytes > self._header.artifact_bytes):
                raise BadArchive("the archive holds more artifacts or bytes than its header "
                                 f"says ({self._header.artifacts} artifacts, "
                                 f"{self._header.artifact_bytes} bytes)")
            yield ArtifactMember(sha256, member.size, self.tar)
            self.tar.skip()  # whatever the caller left unread
        if (self.artifact_count, self.artifact_bytes) != (self._header.artifacts,
                                                           self._header.artifact_bytes):
            raise BadArchive(f"the archive holds {self.artifact_count} artifacts of "
                             f"{self.artifact_bytes} bytes; its header says "
                             f"{self._header.artifacts} of {self._header.artifact_bytes}: "
                             "members are missing", code="truncated")

    def repository_units(self) -> Iterator[UnitsMember]:
        """The units members, repository by repository: added ones, then removed ones."""
        expected = [(entry.index, kind) for entry in self._header.repositories
                    for kind in ("added", "removed")]
        position, number = 0, 0
        while (member := self._peek()) is not None and member.name != layout.TOC:
            match = layout.UNITS.match(member.name)
            if not match:
                raise _stranger(member)
            index, kind, seq = int(match.group(1)), match.group(2), int(match.group(3))
            while position < len(expected) and expected[position] != (index, kind):
                position, number = position + 1, 0
            if position == len(expected) or seq != number or \
                    member.name != layout.units_member(index, kind, seq):
                raise BadArchive(f"member {member.name} is duplicated or out of order",
                                 details={"member": member.name})
            self._take()
            number += 1
            data = self.tar.read_all(layout.MAX_METADATA_MEMBER, member.name)
            lines = _lines(data, member.name, kind)
            key = (index, kind)
            self.unit_counts[key] = self.unit_counts.get(key, 0) + len(lines)
            yield UnitsMember(index, kind, lines)
        for entry in self._header.repositories:
            for kind in ("added", "removed"):
                found = self.unit_counts.get((entry.index, kind), 0)
                if found != getattr(entry, kind):
                    raise BadArchive(f"repository {entry.name} has {found} {kind} units in "
                                     f"the archive; its header says {getattr(entry, kind)}",
                                     code="truncated")

    def finish(self) -> dict[str, Any]:
        """The end: in a stream, its table of contents; in chunks, every checksum checked.
        Returns the table of contents."""
        member = self._take()
        if self._streamed:
            if member is None or member.name != layout.TOC:
                raise BadArchive("the stream ends without its table of contents: it is "
                                 "truncated", code="truncated")
            covered_size, covered_digest = self._mark
            toc = _json(self.tar.read_all(layout.MAX_TOC_SIZE, layout.TOC), layout.TOC,
                        layout.MAX_TOC_SIZE)
            chunks = toc.get("chunks") if isinstance(toc, dict) else None
            if chunks != [Chunk("stream", covered_size, covered_digest).as_dict()]:
                raise BadArchive("the stream's bytes do not match its table of contents: it "
                                 "is damaged or was altered", code="chunk_checksum")
            layout.parse(layout.Toc, toc, "table of contents")
            if toc.get("summary") != self._header_document:
                raise BadArchive("the stream's header differs from the summary in its table "
                                 "of contents: one of them was altered")
            member = self._take()
            self.toc = toc
        if member is not None:
            raise _stranger(member)
        self.source.finish()
        return self.toc


def open_files(toc_path: Path) -> tuple[ArchiveReader, dict[str, Any]]:
    """A reader of the chunks a table-of-contents file lists, in its directory."""
    toc = read_toc_file(toc_path)
    if foreign.is_pulp_toc(toc):
        raise foreign.pulp_export(f"{toc_path.name} is its table of contents")
    parsed = layout.parse(layout.Toc, toc, "table of contents")
    chunks = [Chunk(c.name, c.size, c.sha256) for c in parsed.chunks]
    return ArchiveReader(ChunkSource(toc_path.parent, chunks), toc), toc


def open_stream(stream: BinaryIO) -> ArchiveReader:
    return ArchiveReader(StreamSource(stream), None)


def _stranger(member: Member) -> BadArchive:
    return BadArchive(f"member {member.name[:120]!r} does not belong in a Pallet archive (or "
                      "is out of place)", details={"member": member.name[:200]})


def _json(data: bytes, what: str, limit: int) -> Any:
    return layout.decode_json(data, what, limit)


def _lines(data: bytes, name: str, kind: str) -> list:
    layout.check_shape(data, name, layout.MAX_METADATA_MEMBER)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise BadArchive(f"{name} is not UTF-8 text", details={"member": name}) from None
    if text and not text.endswith("\n"):
        raise BadArchive(f"{name} does not end with a newline: it is truncated",
                         details={"member": name})
    if text.count("\n") > layout.UNITS_PER_MEMBER:
        raise BadArchive(f"{name} holds more than {layout.UNITS_PER_MEMBER} lines",
                         details={"member": name})
    lines = text.split("\n")[:-1]
    if kind == "removed":
        for line in lines:
            if not re.fullmatch(layout.HEX64, line):
                raise BadArchive(f"{name} holds a line that is not an identity digest",
                                 details={"member": name})
        return lines
    units = []
    for number, line in enumerate(lines, start=1):
        try:
            unit = json.loads(line)
        except (ValueError, RecursionError):
            unit = None
        if not (isinstance(unit, dict) and set(unit) == {"type", "fields", "artifacts"}
                and isinstance(unit["type"], str) and isinstance(unit["fields"], dict)
                and isinstance(unit["artifacts"], dict)
                and all(isinstance(k, str) and isinstance(v, str)
                        for k, v in unit["artifacts"].items())):
            raise BadArchive(f"{name} line {number} is not a unit "
                             "({\"type\", \"fields\", \"artifacts\"})",
                             details={"member": name, "line": number})
        units.append(unit)
    return units
