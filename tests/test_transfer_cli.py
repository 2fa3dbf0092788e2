"""The air-gap transfer as a user runs it: two real `pallet serve` processes (two data
directories, two databases, two ports) and the `pallet` CLI as subprocesses. Files go from
one server's export directory to the other's import directory, as on a disk carried across."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import httpx
import pytest

from tests.http_fixtures import file_server, write_repository  # noqa: F401
from tests.servers import Servers
from tests.test_cli import PASSWORD


@pytest.fixture
def servers(tmp_path):
    """Two servers, 'upstream' exporting to exports/, 'disconnected' importing from carried/."""
    running = Servers(tmp_path)
    try:
        urls = {"upstream": running.start(
                    "upstream", PALLET_ALLOWED_EXPORT_DIRS=f'["{tmp_path}/exports"]').url,
                "disconnected": running.start(
                    "disconnected", PALLET_ALLOWED_IMPORT_DIRS=f'["{tmp_path}/carried"]',
                    PALLET_IMPORT_RESERVE_BYTES="0").url}
        (tmp_path / "exports").mkdir()
        yield urls
    finally:
        running.close()


def pallet(url: str, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    env = dict(os.environ, PALLET_URL=url, PALLET_USERNAME="admin", PALLET_PASSWORD=PASSWORD)
    result = subprocess.run([sys.executable, "-m", "pallet.cli.main", *args], env=env,
                            capture_output=True, text=True, timeout=120)
    if check:
        assert result.returncode == 0, result.stderr
    return result


def digest(url: str, repository: str) -> str:
    versions = json.loads(pallet(url, "version", "list", repository, "--json").stdout)
    return versions["results"][0]["digest"]


def test_export_carry_check_import(servers, tmp_path):
    up, down = servers["upstream"], servers["disconnected"]
    pallet(up, "repository", "create", "web")
    for i in range(3):
        (tmp_path / f"file-{i}.txt").write_text(f"release notes {i}\n" * 1000)
        pallet(up, "upload", "file", str(tmp_path / f"file-{i}.txt"), "--repository", "web")
    pallet(up, "signing-key", "create", "release")
    pallet(up, "signing-key", "export", "release", "--output", str(tmp_path / "release.pem"))
    pallet(up, "exporter", "create", "carry", "--path", str(tmp_path / "exports"),
           "--repository", "web", "--signing-key", "release")
    run = pallet(up, "exporter", "run", "carry")
    assert "table of contents" in run.stdout

    shutil.copytree(tmp_path / "exports", tmp_path / "carried")  # the disk goes across
    toc = next((tmp_path / "carried").glob("*.toc.json"))
    pallet(down, "importer", "create", "from-up", "--create-repositories",
           "--trust-key", str(tmp_path / "release.pem"), "--require-signature")
    check = pallet(down, "importer", "check", "from-up", str(toc))
    assert "the check passed" in check.stdout and "create, version 1" in check.stdout
    assert pallet(down, "repository", "show", "web", check=False).returncode == 1
    pallet(down, "importer", "run", "from-up", str(toc))
    assert digest(down, "web") == digest(up, "web")

    # An incremental, downloaded as one stream and uploaded through the API.
    (tmp_path / "extra.txt").write_text("more\n")
    pallet(up, "upload", "file", str(tmp_path / "extra.txt"), "--repository", "web")
    pallet(up, "exporter", "stream", "carry", "--incremental",
           "--output", str(tmp_path / "delta.tar"))
    plan = pallet(down, "importer", "run", "from-up", "--file", str(tmp_path / "delta.tar"))
    assert "imported" in plan.stdout
    assert digest(down, "web") == digest(up, "web")
    imports = json.loads(pallet(down, "import", "list", "--json").stdout)
    assert [i["incremental"] for i in imports["results"]] == [True, False]

    # And through a pipe, as `pallet exporter stream … -o - | ssh … pallet importer run … -`.
    (tmp_path / "piped.txt").write_text("through a pipe\n")
    pallet(up, "upload", "file", str(tmp_path / "piped.txt"), "--repository", "web")
    pallet(down, "importer", "create", "from-pipe")
    cli = f"{sys.executable} -m pallet.cli.main"
    piped = subprocess.run(
        f"{cli} --url {up} exporter stream carry --incremental -o - | "
        f"{cli} --url {down} importer run from-pipe -", shell=True, capture_output=True,
        text=True, timeout=120,
        env=dict(os.environ, PALLET_USERNAME="admin", PALLET_PASSWORD=PASSWORD))
    assert piped.returncode == 0, piped.stderr
    assert digest(down, "web") == digest(up, "web")


def test_the_readme_walk_exports_an_on_demand_mirror(servers, tmp_path, file_server):
    """The README's walk, with its mirror synced on demand: the export fetches the files
    nobody asked for yet, and the disconnected server serves them."""
    up, down = servers["upstream"], servers["disconnected"]
    files = {"tools/tool-2.1.tar.gz": os.urandom(300_000), "notes.txt": b"notes\n"}
    write_repository(tmp_path / "files", files)
    upstream = file_server(tmp_path / "files")
    pallet(up, "remote", "create", "upstream", "--url", upstream.url, "--policy", "on_demand")
    pallet(up, "repository", "create", "mirror", "--remote", "upstream", "--autopublish",
           "--distribute", "mirror")
    pallet(up, "repository", "sync", "mirror")
    pallet(up, "signing-key", "create", "release")
    pallet(up, "signing-key", "export", "release", "-o", str(tmp_path / "release.pem"))
    pallet(up, "exporter", "create", "to-site", "--path", str(tmp_path / "exports"),
           "--repository", "mirror", "--signing-key", "release", "--chunk-size", "4G")
    refused = pallet(up, "exporter", "run", "to-site", "--no-fetch", check=False)
    assert refused.returncode == 1 and "never downloaded" in refused.stderr
    assert upstream.count("/notes.txt") == 0
    pallet(up, "exporter", "run", "to-site")
    assert all(upstream.count(f"/{path}") == 1 for path in files)

    shutil.copytree(tmp_path / "exports", tmp_path / "carried")
    toc = str(next((tmp_path / "carried").glob("to-site-*.toc.json")))
    pallet(down, "importer", "create", "from-site", "--create-repositories", "--trust-key",
           str(tmp_path / "release.pem"), "--require-signature")
    pallet(down, "importer", "check", "from-site", toc)
    pallet(down, "importer", "run", "from-site", toc)
    assert digest(down, "mirror") == digest(up, "mirror")
    served = httpx.get(f"{down}/pallet/content/mirror/tools/tool-2.1.tar.gz", timeout=30)
    assert served.status_code == 200 and served.content == files["tools/tool-2.1.tar.gz"]
