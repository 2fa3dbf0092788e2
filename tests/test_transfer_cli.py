"""The air-gap transfer as a user runs it: two real `pallet serve` processes (two data
directories, two databases, two ports) and the `pallet` CLI as subprocesses. Files go from
one server's export directory to the other's import directory, as on a disk carried across."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import uuid

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from tests.processes import stop
from tests.test_cli import PASSWORD, _free_port, _wait_until_ready


def _database(tmp_path, name: str):
    server = os.environ.get("PALLET_TEST_DATABASE_URL")
    if not server:
        return f"sqlite:///{tmp_path / f'{name}.db'}", None
    database = f"pallet_xfer_{uuid.uuid4().hex[:12]}"
    admin = create_engine(server, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{database}"'))

    def drop() -> None:
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)'))
        admin.dispose()
    return make_url(server).set(database=database).render_as_string(hide_password=False), drop


@pytest.fixture
def servers(tmp_path):
    """Two servers, 'upstream' exporting to exports/, 'disconnected' importing from carried/."""
    started, drops, urls = [], [], {}
    for name, extra in (("upstream", {"PALLET_ALLOWED_EXPORT_DIRS": f'["{tmp_path}/exports"]'}),
                        ("disconnected", {"PALLET_ALLOWED_IMPORT_DIRS":
                                          f'["{tmp_path}/carried"]',
                                          "PALLET_IMPORT_RESERVE_BYTES": "0"})):
        database, drop = _database(tmp_path, name)
        if drop:
            drops.append(drop)
        port = _free_port()
        env = dict(os.environ, PALLET_DATA_DIR=str(tmp_path / name), PALLET_PORT=str(port),
                   PALLET_ADMIN_PASSWORD=PASSWORD, PALLET_WORKERS="2",
                   PALLET_DATABASE_URL=database, PALLET_TASK_POLL_SECONDS="0.1",
                   PALLET_LOG_LEVEL="warning", **extra)
        env.pop("PALLET_CONFIG", None)
        (tmp_path / name).mkdir()
        log_path = tmp_path / name / "server.log"
        with open(log_path, "wb") as log:
            process = subprocess.Popen([sys.executable, "-m", "pallet.cli.main", "serve"],
                                       env=env, stdout=log, stderr=subprocess.STDOUT)
        started.append(process)
        urls[name] = f"http://127.0.0.1:{port}"
        _wait_until_ready(urls[name], process, log_path)
    (tmp_path / "exports").mkdir()
    try:
        yield urls
    finally:
        for process in started:
            stop(process)
        for drop in drops:
            drop()


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
