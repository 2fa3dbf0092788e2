"""The remote as a type's sync reads it: files fetched through the downloader, verified
against the checksum and size announced for them, decompressed by suffix within the limit,
and all deleted when the reader closes."""

from __future__ import annotations

import asyncio
import bz2
import gzip
import hashlib
import lzma
import os

import pytest
import zstandard

from pallet.artifacts.storage import DigestMismatch
from pallet.errors import Invalid
from pallet.plugin import Checksum
from pallet.remotes.downloader import Downloader, RemoteConfig
from pallet.remotes.reader import RemoteFiles
from tests.http_fixtures import file_server  # noqa: F401 - the fixture

TEXT = b"<metadata>" + b"x" * 5000 + b"</metadata>\n"
COMPRESSORS = {".gz": gzip.compress, ".bz2": bz2.compress, ".xz": lzma.compress,
               ".zst": zstandard.ZstdCompressor().compress}


def read_with(runtime, url, work, *, limit=1 << 20):
    """Run `work(remote)` in a thread, as a type's read_remote runs; returns its result and
    the temporary files it was given (gone once the reader closed)."""
    async def main():
        async with Downloader(RemoteConfig(url=url, max_retries=0), runtime.settings,
                              runtime.storage) as downloader:
            remote = RemoteFiles(url, downloader, asyncio.get_running_loop(),
                                 schemes=("http", "https"), limit=limit, tmp_dir=None,
                                 progress=lambda done, total: None)
            try:
                return await asyncio.to_thread(work, remote), list(remote._paths)
            finally:
                remote.close()
    return asyncio.run(main())


@pytest.mark.parametrize("suffix", sorted(COMPRESSORS))
def test_a_compressed_file_is_verified_then_decompressed(runtime, file_server, tmp_path,
                                                         suffix):
    packed = COMPRESSORS[suffix](TEXT)
    (tmp_path / "repodata").mkdir()
    (tmp_path / "repodata" / f"primary.xml{suffix}").write_bytes(packed)
    server = file_server(tmp_path)
    checksum = Checksum("sha256", hashlib.sha256(packed).hexdigest())
    text, paths = read_with(runtime, server.url, lambda remote: remote.fetch(
        f"repodata/primary.xml{suffix}", checksum=checksum, size=len(packed),
        decompress=True).read_bytes())
    assert text == TEXT
    assert paths and not any(os.path.exists(p) for p in paths)


def test_a_file_whose_checksum_or_size_differs_is_refused(runtime, file_server, tmp_path):
    (tmp_path / "repomd.xml").write_bytes(TEXT)
    server = file_server(tmp_path)
    with pytest.raises(DigestMismatch, match="sha1"):
        read_with(runtime, server.url, lambda remote: remote.fetch(
            "repomd.xml", checksum=Checksum("sha", "0" * 40)))
    with pytest.raises(DigestMismatch, match="bytes, not 3"):
        read_with(runtime, server.url, lambda remote: remote.fetch("repomd.xml", size=3))
    with pytest.raises(Invalid, match="unknown checksum type"):
        read_with(runtime, server.url, lambda remote: remote.fetch(
            "repomd.xml", checksum=Checksum("crc32", "0")))


def test_a_decompression_bomb_stops_at_the_limit(runtime, file_server, tmp_path):
    (tmp_path / "bomb.xml.gz").write_bytes(gzip.compress(b"\0" * (8 << 20)))
    server = file_server(tmp_path)
    with pytest.raises(Invalid, match="decompresses to more than"):
        read_with(runtime, server.url, lambda remote: remote.fetch(
            "bomb.xml.gz", decompress=True), limit=1 << 20)


def test_bytes_that_do_not_decompress_are_a_clear_error(runtime, file_server, tmp_path):
    (tmp_path / "junk.xml.xz").write_bytes(b"not xz at all")
    server = file_server(tmp_path)
    with pytest.raises(Invalid, match="cannot be decompressed"):
        read_with(runtime, server.url, lambda remote: remote.fetch("junk.xml.xz",
                                                                   decompress=True))


def test_hrefs_resolve_inside_the_remote_and_other_schemes_are_refused(runtime, file_server,
                                                                        tmp_path):
    server = file_server(tmp_path)
    url = server.url + "repo"  # no trailing slash: still read as a folder
    resolved, _ = read_with(runtime, url, lambda remote: remote.resolve("repodata/repomd.xml"))
    assert resolved == server.url + "repo/repodata/repomd.xml"
    with pytest.raises(Invalid, match="not allowed from this remote"):
        read_with(runtime, url, lambda remote: remote.fetch("file:///etc/passwd"))
