"""Files that are not Pallet archives are named for what they are: a Pulp export (its tar,
whose first member is `versions.json`, or its `-toc.json`) or not an archive at all, rather
than "truncated". Checked on the reader, and as a user meets it: `pallet importer check/run`
against a real `pallet serve`, with a path on the server, with `--file`, and streamed."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import tarfile
import zlib
from pathlib import Path

import pytest

from pallet.transfer.reader import open_files, open_stream
from pallet.transfer.tarstream import BadArchive
from tests.servers import Servers
from tests.test_cli import PASSWORD

PULP = "a Pulp export; Pallet reads Pallet archives"
JUNK = "not an archive"
STAMP = "export-0d8a8e4f-8bb5-4c6e-9d5a-1b2c3d4e5f60-20261203_1200"


def pulp_export(directory: Path) -> tuple[Path, Path]:
    """A Pulp export as it lies on disk: the tar (versions.json first, then artifacts and
    django-import-export dumps) and its -toc.json with CRC32 checksums."""
    directory.mkdir(parents=True, exist_ok=True)
    tar_path = directory / f"{STAMP}.tar"
    payload = b"hello from pulp\n"
    sha = "5a8c6b8e0f39b1d6c3b36c26c8ec4de6e7aa5e3c1c56b0b7d0f7f4f8b1f6e2d9"
    members = [
        ("versions.json", json.dumps([{"component": "core", "version": "3.123.1"},
                                      {"component": "file", "version": "3.123.1"}]).encode()),
        (f"artifact/{sha[:2]}/{sha[2:]}", payload),
        ("pulpcore.app.modelresource.ArtifactResource.json",
         json.dumps([{"file": f"artifact/{sha[:2]}/{sha[2:]}", "sha256": sha}]).encode()),
        ("repository-web_1/pulp_file.app.modelresource.FileContentResource.json", b"[]"),
    ]
    with tarfile.open(tar_path, "w") as tar:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    toc = directory / f"{STAMP}-toc.json"
    crc = f"{zlib.crc32(tar_path.read_bytes()):08x}"
    toc.write_text(json.dumps({"meta": {"checksum_type": "crc32"},
                               "files": {tar_path.name: crc}}))
    return tar_path, toc


def refusal(stream) -> BadArchive:
    with pytest.raises(BadArchive) as caught:
        open_stream(stream).header()
    assert "truncated" not in caught.value.message
    return caught.value


# -- the reader ------------------------------------------------------------------------------

def test_the_reader_names_a_pulp_export_and_junk(tmp_path):
    tar_path, toc = pulp_export(tmp_path)
    for path in (tar_path, toc):
        with open(path, "rb") as stream:
            error = refusal(stream)
        assert PULP in error.message and error.code == "pulp_export", error.message
    for junk in (b"\x00junk\xff\x01\x02\x03", b"", os.urandom(4096), b"{\"a\": 1}\n"):
        error = refusal(io.BytesIO(junk))
        assert JUNK in error.message and error.code == "not_an_archive", (junk, error.message)


def test_a_pulp_toc_renamed_as_a_pallet_toc_is_named_too(tmp_path):
    _, toc = pulp_export(tmp_path)
    renamed = tmp_path / "carried.toc.json"
    renamed.write_bytes(toc.read_bytes())
    with pytest.raises(BadArchive, match=PULP):
        open_files(renamed)


# -- as a user meets it ----------------------------------------------------------------------

@pytest.fixture
def server(tmp_path):
    running = Servers(tmp_path)
    try:
        yield running.start("disconnected",
                            PALLET_ALLOWED_IMPORT_DIRS=f'["{tmp_path}/carried"]').url
    finally:
        running.close()


def pallet(url: str, *args: str, input: bytes | None = None) -> subprocess.CompletedProcess:
    env = dict(os.environ, PALLET_URL=url, PALLET_USERNAME="admin", PALLET_PASSWORD=PASSWORD)
    return subprocess.run([sys.executable, "-m", "pallet.cli.main", *args], env=env,
                          capture_output=True, input=input, timeout=120)


def refused(result: subprocess.CompletedProcess, words: str) -> None:
    stderr = result.stderr.decode()
    assert result.returncode == 1, (result.stdout, stderr)
    assert words in stderr and "truncated" not in stderr, stderr
    lines = stderr.splitlines()  # with --file, a note on the upload comes first
    assert lines[-1].startswith("error: ") and "Traceback" not in stderr, stderr
    assert [line for line in lines if line.startswith("error")] == lines[-1:], stderr


def test_importer_commands_say_what_the_file_is(server, tmp_path):
    tar_path, toc = pulp_export(tmp_path / "carried")
    junk = tmp_path / "carried" / "junk.bin"
    junk.write_bytes(b"\x7fjunk\x00\x01\xfe")
    assert pallet(server, "importer", "create", "im", "--create-repositories").returncode == 0
    for verb in ("check", "run"):
        refused(pallet(server, "importer", verb, "im", str(toc)), PULP)
        refused(pallet(server, "importer", verb, "im", str(tar_path)), PULP)
        refused(pallet(server, "importer", verb, "im", str(junk)), JUNK)
        refused(pallet(server, "importer", verb, "im", "--file", str(tar_path)), PULP)
        refused(pallet(server, "importer", verb, "im", "--file", str(junk)), JUNK)
    refused(pallet(server, "importer", "run", "im", "-", input=tar_path.read_bytes()), PULP)
    refused(pallet(server, "importer", "run", "im", "-", input=junk.read_bytes()), JUNK)
    listed = pallet(server, "repository", "list", "--json")
    assert json.loads(listed.stdout)["count"] == 0
