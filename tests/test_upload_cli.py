"""`pallet upload file` and `pallet importer … --file` as users run them: the CLI as a
subprocess against a real `pallet serve` started here, stopped by their PIDs."""

from __future__ import annotations

import json
import re
import os
import shlex
import signal
import subprocess
import sys
import time

import httpx
import pytest

from tests.processes import stop, wait_until
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
    """Uploads the API lists and files in the uploads folder (made at the first upload)."""
    listed = json.loads(cli(server, "upload", "list", "--json").stdout)["results"]
    folder = server.data_dir / "uploads"
    return listed + (list(folder.iterdir()) if folder.exists() else [])


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


def pallet_process(server, *args, log) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PALLET_")}
    env.update(PALLET_URL=server.url, PALLET_USERNAME="admin", PALLET_PASSWORD=PASSWORD)
    return subprocess.Popen([sys.executable, "-m", "pallet.cli.main", *map(str, args)],
                            env=env, stdout=log, stderr=log)


def newest_version(server, repository: str) -> dict:
    with httpx.Client(base_url=f"{server.url}/api/v1", auth=("admin", PASSWORD)) as api:
        return api.get(f"/repositories/{repository}/versions").json()["results"][0]


@pytest.mark.slow
def test_ctrl_c_while_the_commit_waits_stops_only_the_wait(tmp_path):
    """A server without workers, so the CLI surely waits on the commit; SIGINT it there, then
    start a worker: the artifact, its unit and the new version all appear."""
    running = Servers(tmp_path)
    try:
        server = running.start("idle", PALLET_WORKERS="0")
        cli(server, "repository", "create", "web")
        (tmp_path / "site.tar").write_bytes(os.urandom(300_000))
        with open(tmp_path / "cli.log", "wb") as log:
            upload = pallet_process(server, "upload", "file", tmp_path / "site.tar",
                                    "--repository", "web", "--relative-path", "rel/site.tar",
                                    log=log)
        api = httpx.Client(base_url=f"{server.url}/api/v1", auth=("admin", PASSWORD))
        try:
            commit = wait_until(lambda: api.get("/tasks").json()["results"], 30,
                                "the CLI queued no commit")[0]
            time.sleep(0.5)  # the CLI is polling the task now
            upload.send_signal(signal.SIGINT)
            assert upload.wait(30) == 130, (tmp_path / "cli.log").read_text()
            assert (f"task {commit['id']} continues on the server"
                    in (tmp_path / "cli.log").read_text())
            assert commit["state"] == "waiting"

            worker = subprocess.Popen([sys.executable, "-m", "pallet.cli.main", "worker"],
                                      env=server.env, stdout=subprocess.DEVNULL,
                                      stderr=subprocess.STDOUT)
            try:
                done = wait_until(lambda: (t := api.get(server.url + commit["href"]).json())["state"]
                                  in ("completed", "failed") and t, 30, "the commit never ran")
            finally:
                stop(worker)
            assert done["state"] == "completed", done["error"]
            assert newest_version(server, "web")["number"] == 1
            units = api.get("/content", params={"repository": "web"}).json()["results"]
            assert [u["fields"]["relative_path"] for u in units] == ["rel/site.tar"]
        finally:
            api.close()
    finally:
        running.close()


@pytest.mark.slow
def test_an_interrupted_upload_prints_the_whole_command_to_resume(server, tmp_path):
    cli(server, "repository", "create", "isos")
    big = tmp_path / "big image.iso"  # a space: the command must quote it
    big.write_bytes(os.urandom(40 * 2**20))
    with open(tmp_path / "cli.log", "wb") as log:
        sending = pallet_process(server, "upload", "file", big, "--repository", "isos",
                                 "--relative-path", "images/big.iso", "--chunk-size", 65536,
                                 "--parallel", 1, log=log)
    with httpx.Client(base_url=f"{server.url}/api/v1", auth=("admin", PASSWORD)) as api:
        wait_until(lambda: any(u["received_bytes"] for u in
                               api.get("/uploads").json()["results"]), 60, "nothing sent")
    sending.send_signal(signal.SIGINT)
    assert sending.wait(30) == 130
    hint = re.search(r"resume with `(.+)`", (tmp_path / "cli.log").read_text()).group(1)
    command = shlex.split(hint)
    assert command[:3] == ["pallet", "upload", "file"] and command[3] == str(big)
    assert ["--repository", "isos"] in pairs(command) and \
        ["--relative-path", "images/big.iso"] in pairs(command)

    resumed = cli(server, *command[1:])
    assert "sending" in resumed.stderr and "of 41943040 bytes" in resumed.stderr
    assert "repository isos: created version 1" in resumed.stdout
    assert uploads_left(server) == []
    units = json.loads(cli(server, "content", "list", "--repository", "isos", "--json").stdout)
    assert [u["fields"]["relative_path"] for u in units["results"]] == ["images/big.iso"]


def pairs(command: list[str]) -> list[list[str]]:
    return [command[i:i + 2] for i in range(len(command) - 1)]


def test_an_invalid_relative_path_is_refused_before_any_byte_is_sent(server, tmp_path):
    cli(server, "repository", "create", "strict")
    (tmp_path / "a.txt").write_text("text\n")
    artifacts = json.loads(cli(server, "artifact", "list", "--json").stdout)["count"]
    uploads = uploads_left(server)
    for bad in ("../a.txt", "a//b.txt", "/etc/a.txt"):
        refused = cli(server, "upload", "file", tmp_path / "a.txt", "--repository", "strict",
                      "--relative-path", bad, expect=1)
        assert refused.stderr.startswith("error: ") and "relative_path" in refused.stderr
        assert "upload" not in refused.stderr.removeprefix("error: ")
    assert uploads_left(server) == uploads
    assert json.loads(cli(server, "artifact", "list", "--json").stdout)["count"] == artifacts
    assert newest_version(server, "strict")["number"] == 0
