"""`pallet upload file` and `pallet importer … --file` as users run them: the CLI as a
subprocess against a real `pallet serve` started here, stopped by their PIDs."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import httpx
import pytest

from tests.servers import Servers
from tests.test_cli import PASSWORD


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    base = tmp_path_factory.mktemp("upload-cli")
    (base / "exports").mkdir()
    running = Servers(base)
    try:
        yield running.start("server", PALLET_IMPORT_RESERVE_BYTES="0",
                            PALLET_ALLOWED_EXPORT_DIRS=f'["{base / "exports"}"]')
    finally:
        running.close()


def cli(server, *args, user: str = "admin", password: str = PASSWORD, expect: int = 0,
        ) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PALLET_")}
    env.update(PALLET_URL=server.url, PALLET_USERNAME=user, PALLET_PASSWORD=password,
               COLUMNS="200")
    result = subprocess.run([sys.executable, "-m", "pallet.cli.main", *map(str, args)],
                            env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == expect, (args, result.stdout, result.stderr)
    assert "Traceback" not in result.stderr, result.stderr
    return result


def uploads_left(server) -> list:
    listed = json.loads(cli(server, "upload", "list", "--json").stdout)["results"]
    return listed + list((server.data_dir / "uploads").iterdir())


def test_importer_file_leaves_no_upload_behind_whatever_the_end(server, tmp_path):
    """With the importer role alone; after a check, an import, a failed import and a
    refused archive, the uploads directory is empty."""
    (tmp_path / "a.txt").write_text("some text\n" * 100)
    cli(server, "repository", "create", "src")
    cli(server, "upload", "file", tmp_path / "a.txt", "--repository", "src")
    cli(server, "exporter", "create", "out", "--path", server.data_dir.parent / "exports",
        "--repository", "src")
    archive = tmp_path / "src.tar"
    cli(server, "exporter", "stream", "out", "-o", archive)
    cli(server, "user", "create", "porter", "--role", "importer", "--password",
        "porter-password-1")
    cli(server, "importer", "create", "in", "--map", "src=dst", "--create-repositories")
    porter = {"user": "porter", "password": "porter-password-1"}

    assert "the check passed" in cli(server, "importer", "check", "in", "--file", archive,
                                     **porter).stdout
    assert uploads_left(server) == []
    assert "imported" in cli(server, "importer", "run", "in", "--file", archive,
                             **porter).stdout
    assert uploads_left(server) == []

    cut = tmp_path / "cut.tar"  # its header reads well; then it ends
    cut.write_bytes(archive.read_bytes()[: archive.stat().st_size // 2])
    failed = cli(server, "importer", "run", "in", "--file", cut, expect=1, **porter)
    assert "truncated" in failed.stderr
    assert uploads_left(server) == []
    junk = tmp_path / "junk.tar"  # refused before any task starts
    junk.write_bytes(b"not an archive" * 1000)
    cli(server, "importer", "check", "in", "--file", junk, expect=1, **porter)
    assert uploads_left(server) == []
