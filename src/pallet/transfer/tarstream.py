"""The smallest tar that serves Pallet's archives: regular files only, written and read as
one forward stream.

Headers are POSIX ustar, which every tar reads; sizes of 8 GiB and more use the base-256
encoding GNU tar and libarchive understand. The reader is strict on purpose: it knows
regular files and nothing else, so a link, a device, a directory or an extension header in an
archive is refused by name rather than interpreted. Member names are checked by the caller
against the archive's grammar (`pallet.transfer.layout`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from pallet.errors import Invalid

BLOCK = 512
_MAX_OCTAL_SIZE = 8**11 - 1
_TYPES = {b"1": "a hard link", b"2": "a symbolic link", b"3": "a character device",
          b"4": "a block device", b"5": "a directory", b"6": "a FIFO",
          b"7": "a contiguous file", b"x": "a pax extended header",
          b"g": "a pax global header", b"L": "a GNU long name", b"K": "a GNU long link name"}


class BadArchive(Invalid):
    code = "bad_archive"


def _octal(value: int, width: int) -> bytes:
    return f"{value:0{width - 1}o}".encode() + b"\0"


def _template() -> tuple[bytes, int]:
    """Every field of a member's header but its name, size and checksum, and their sum with
    the checksum field blank (eight spaces), as the checksum is computed."""
    block = bytearray(BLOCK)
    block[100:108] = _octal(0o644, 8)
    block[108:116] = _octal(0, 8)
    block[116:124] = _octal(0, 8)
    block[136:148] = _octal(0, 12)  # mtime 0: an archive's bytes depend on its content only
    block[148:156] = b" " * 8
    block[156:157] = b"0"
    block[257:265] = b"ustar\x0000"
    return bytes(block), sum(block)


_TEMPLATE, _TEMPLATE_SUM = _template()


def header(name: str, size: int) -> bytes:
    """The 512-byte ustar header of a regular file `name` (at most 100 bytes, ASCII)."""
    encoded = name.encode("ascii")
    if len(encoded) > 100:
        raise ValueError(f"tar member name too long: {name}")
    if size <= _MAX_OCTAL_SIZE:
        size_field = b"%011o\0" % size
    else:  # base-256: high bit set, big-endian in the remaining 11 bytes
        size_field = bytes([0x80]) + size.to_bytes(11, "big")
    checksum = b"%06o\0 " % (_TEMPLATE_SUM + sum(encoded) + sum(size_field))
    # Sliced together from the template: one header per artifact, so this is a hot path.
    return b"".join((encoded, _TEMPLATE[len(encoded):124], size_field, _TEMPLATE[136:148],
                     checksum, _TEMPLATE[156:]))


def padding(size: int) -> bytes:
    return b"\0" * (-size % BLOCK)


END = b"\0" * (2 * BLOCK)  # two zero blocks close an archive


@dataclass(frozen=True)
class Member:
    name: str
    size: int


OCTAL = b"01234567"


def _parse_size(field: bytes) -> int:
    if field[0] & 0x80:
        if field[0] != 0x80:
            raise BadArchive("a tar header has a negative or oversized size")
        return int.from_bytes(field[1:], "big")
    text = field.split(b"\0", 1)[0].strip()
    if not text or text.strip(OCTAL):  # only octal digits: strip leaves nothing
        raise BadArchive("a tar header has a size that is not a number")
    return int(text, 8)


def checksum_matches(block: bytes) -> bool:
    """Whether a 512-byte block is a tar header: its checksum field holds its byte sum."""
    stored = block[148:156].split(b"\0", 1)[0].strip()
    actual = sum(block[:148]) + 8 * 32 + sum(block[156:])
    return bool(stored) and not stored.strip(OCTAL) and int(stored, 8) == actual


def parse_header(block: bytes) -> Member | None:
    """The member a header block describes, or None for the end-of-archive block."""
    if block == b"\0" * BLOCK:
        return None
    if not checksum_matches(block):
        raise BadArchive("a tar header's checksum is wrong: the archive is damaged or is "
                         "not a tar archive")
    raw_name = block[0:100].split(b"\0", 1)[0]
    prefix = block[345:500].split(b"\0", 1)[0] if block[257:262] == b"ustar" else b""
    try:
        name = ((prefix + b"/" if prefix else b"") + raw_name).decode("utf-8")
    except UnicodeDecodeError:
        raise BadArchive("a tar member's name is not UTF-8") from None
    kind = block[156:157]
    if kind not in (b"0", b"\0"):
        what = _TYPES.get(kind, f"of type {kind!r}")
        raise BadArchive(f"member {name[:120]!r} is {what}: a Pallet archive holds regular "
                         "files only", details={"member": name[:200]})
    return Member(name, _parse_size(block[124:136]))


class TarReader:
    """Members of a tar stream, one after another; each one's data is read before the next.

    `read(n)` of the source must return n bytes unless the stream ends."""

    def __init__(self, source: Callable[[int], bytes]) -> None:
        self._read = source
        self._left = 0  # data bytes of the current member not yet read
        self._pad = 0
        self.ended = False

    def _exactly(self, n: int) -> bytes:
        data = self._read(n)
        if len(data) != n:
            raise BadArchive("the archive ends in the middle of a member: it is truncated",
                             code="truncated")
        return data

    def next(self) -> Member | None:
        """The next member's header, or None at the archive's end."""
        if self._left or self._pad:
            self.skip()
        member = parse_header(self._exactly(BLOCK))
        if member is None:
            self._exactly(BLOCK)  # the second zero block
            self.ended = True
            return None
        self._left, self._pad = member.size, -member.size % BLOCK
        return member

    def read(self, n: int) -> bytes:
        """Up to n bytes of the current member's data (b"" at its end)."""
        n = min(n, self._left)
        if n <= 0:
            return b""
        data = self._exactly(n)
        self._left -= n
        if not self._left and self._pad:
            self._exactly(self._pad)
            self._pad = 0
        return data

    def read_all(self, limit: int, what: str = "a metadata member") -> bytes:
        if self._left > limit:
            raise BadArchive(f"{what} has {self._left} bytes, more than the limit of {limit}")
        return self.read(self._left)

    def skip(self) -> None:
        while self._left:
            self.read(min(self._left, 1 << 20))
        if self._pad:
            self._exactly(self._pad)
            self._pad = 0


def write_member(write: Callable[[bytes], object], name: str, data: bytes) -> None:
    write(header(name, len(data)) + data + padding(len(data)))
