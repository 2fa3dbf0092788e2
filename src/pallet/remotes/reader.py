"""The remote as a repository type's sync reads it (`pallet.plugin.RemoteReader`).

A type's `read_remote` runs in a worker thread and asks for files one at a time: a yum
repository's repomd.xml, then the metadata files it names. Each fetch runs on the sync's
event loop through its downloader (TLS, proxy, auth, retries, timeouts, `file://` checks),
into a temporary file that is verified against the announced checksum and size and, when
asked, decompressed into another, both bounded by `max_index_size`: a decompression bomb
stops at the limit instead of filling the disk. Every temporary file goes when the sync ends.
"""

from __future__ import annotations

import asyncio
import bz2
import gzip
import hashlib
import lzma
import os
import tempfile
from pathlib import Path
from typing import BinaryIO, Callable
from urllib.parse import urljoin, urlsplit

import zstandard

from pallet.artifacts.storage import DigestMismatch
from pallet.errors import Invalid
from pallet.plugin import Checksum, SyncOptions
from pallet.remotes.downloader import Downloader, announced_algorithm

CHUNK = 1 << 20
_OPENERS: dict[str, Callable[[BinaryIO], BinaryIO]] = {
    ".gz": lambda raw: gzip.GzipFile(fileobj=raw),
    ".bz2": lambda raw: bz2.BZ2File(raw),
    ".xz": lambda raw: lzma.LZMAFile(raw),
    ".zst": lambda raw: zstandard.ZstdDecompressor().stream_reader(raw),
}


class Unchanged(Exception):
    """The fingerprint file is the one the last sync read: nothing to do."""


class RemoteFiles:
    """A `RemoteReader` over one sync's downloader and event loop. `unchanged(sha256)` says
    whether a fingerprint file with that digest means the sync has nothing to do; `options`
    are the remote's sync options, validated."""

    def __init__(self, url: str, downloader: Downloader, loop: asyncio.AbstractEventLoop,
                 *, schemes: tuple[str, ...], limit: int, tmp_dir: str | None,
                 progress: Callable[[int, int | None], None],
                 unchanged: Callable[[str], bool] = lambda sha256: False,
                 options: SyncOptions = SyncOptions()) -> None:
        self.url = url
        self.options = options
        self.last_url = url  # the file being read, for error messages
        self.fingerprint: str | None = None  # sha256 of the fingerprint file read
        self._unchanged = unchanged
        self._downloader, self._loop = downloader, loop
        self._schemes, self._limit, self._tmp_dir = schemes, limit, tmp_dir
        self._progress = progress
        self._paths: list[Path] = []

    def resolve(self, href: str) -> str:
        base = self.url if self.url.endswith("/") else self.url + "/"
        return urljoin(base, href)

    def fetch(self, href: str, *, checksum: Checksum | None = None, size: int | None = None,
              decompress: bool = False, fingerprint: bool = False) -> Path:
        url = self.resolve(href)
        if urlsplit(url).scheme.lower() not in self._schemes:
            raise Invalid(f"{url[:200]!r} is not allowed from this remote (use "
                          f"{' or '.join(self._schemes)})", details={"url": url[:200]})
        self.last_url = url
        algorithm = announced_algorithm(url, checksum) if checksum else None
        path = asyncio.run_coroutine_threadsafe(
            self._downloader.fetch_index(url, self._progress), self._loop).result()
        self._paths.append(path)
        _verify(url, path, algorithm, checksum, size)
        if fingerprint:
            self.fingerprint = _sha256(path)
            if self._unchanged(self.fingerprint):
                raise Unchanged()
        opener = _OPENERS.get(os.path.splitext(urlsplit(url).path)[1].lower())
        if not decompress or opener is None:
            return path
        return self._decompressed(url, path, opener)

    def close(self) -> None:
        for path in self._paths:
            path.unlink(missing_ok=True)
        self._paths.clear()

    def _decompressed(self, url: str, path: Path, opener) -> Path:
        fd, name = tempfile.mkstemp(dir=self._tmp_dir, prefix="metadata-")
        self._paths.append(Path(name))
        written = 0
        try:
            with open(path, "rb") as raw, opener(raw) as stream, os.fdopen(fd, "wb") as out:
                while chunk := stream.read(CHUNK):
                    written += len(chunk)
                    if written > self._limit:
                        raise Invalid(f"{url} decompresses to more than {self._limit} bytes "
                                      "(max_index_size is the limit)", details={"url": url})
                    out.write(chunk)
        except (OSError, EOFError, lzma.LZMAError, zstandard.ZstdError) as exc:
            raise Invalid(f"{url} cannot be decompressed: {exc}", details={"url": url}) from None
        return Path(name)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        while chunk := stream.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _verify(url: str, path: Path, algorithm: str | None, checksum: Checksum | None,
            size: int | None) -> None:
    actual_size = path.stat().st_size
    if size is not None and actual_size != size:
        raise DigestMismatch(f"{url} has {actual_size} bytes, not {size} as announced",
                             details={"url": url})
    if algorithm is None:
        return
    digest = hashlib.new(algorithm)
    with open(path, "rb") as stream:
        while chunk := stream.read(CHUNK):
            digest.update(chunk)
    if digest.hexdigest() != checksum.value.lower():
        raise DigestMismatch(f"{url} does not have the {algorithm} announced for it "
                             f"(announced {checksum.value[:128]}, got {digest.hexdigest()})",
                             details={"url": url})

