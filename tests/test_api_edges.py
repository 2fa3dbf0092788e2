"""The REST API's edges: paths that reach the file system (NUL bytes, unencodable text,
FIFOs), a full disk, absurd numbers, and what a refusal looks like."""

from __future__ import annotations

import errno
import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import httpx
import pytest

from conftest import export_settings, wait_for_task
from factories import make_files
from tests.processes import free_port, stop
from test_cli import PASSWORD, _wait_until_ready


@pytest.fixture
def settings(tmp_path, database_url):
    return export_settings(tmp_path, database_url, import_too=True)


def assert_refused(response, status: int = 400, code: str = "invalid") -> dict:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["code"] == code and error["message"], error
    return error


def raw_json(client, method: str, url: str, text: str):
    """A body sent as written: JSON escapes such as a lone surrogate, which a client
    library would refuse to encode, reach the server."""
    return client.request(method, url, content=text.encode(),
                          headers={"Content-Type": "application/json"})


@pytest.fixture
def publication(client, workers) -> int:
    assert client.post("/api/v1/repositories", json={"name": "web"}).status_code == 201
    task = wait_for_task(client, client.post("/api/v1/publications",
                                             json={"repository": "web"}).json()["href"])
    assert task["state"] == "completed", task["error"]
    return task["result"]["publication"]


# Every request that names a path on the server, as (method, url, body with PATH in it).
PATH_REQUESTS = [
    ("POST", "/api/v1/importers/im/check", '{"path": "PATH"}'),
    ("POST", "/api/v1/importers/im/import", '{"path": "PATH"}'),
    ("POST", "/api/v1/exporters", '{"name": "ex2", "path": "PATH", "repositories": ["web"]}'),
    ("PATCH", "/api/v1/exporters/ex", '{"path": "PATH"}'),
    ("POST", "/api/v1/publications/PUB/tree", '{"path": "PATH"}'),
    ("POST", "/api/v1/remotes", '{"name": "up", "url": "file://URLPATH/"}'),
]


@pytest.mark.parametrize("method, url, body", PATH_REQUESTS)
@pytest.mark.parametrize("bad", ["a\\u0000b", "a\\ud800b"], ids=["nul", "surrogate"])
def test_a_path_the_file_system_cannot_hold_is_refused(client, runtime, tmp_path, publication,
                                                      method, url, body, bad):
    client.post("/api/v1/importers", json={"name": "im"})
    client.post("/api/v1/exporters", json={"name": "ex", "path": str(tmp_path / "exports"),
                                           "repositories": ["web"]})
    where = f"{tmp_path / 'exports'}/{bad}"
    url_path = where.replace("\\u0000", "%00")  # a URL says NUL this way
    text = body.replace("URLPATH", url_path).replace("PATH", where)
    before = client.get("/api/v1/exporters/ex").json()
    error = assert_refused(raw_json(client, method, url.replace("PUB", str(publication)), text))
    assert "path" in error["message"] or "url" in error["message"], error
    assert client.get("/api/v1/exporters/ex").json() == before
    assert client.get("/api/v1/remotes/up").status_code == 404


def test_an_exporter_path_cannot_be_set_to_null(client, tmp_path, publication):
    client.post("/api/v1/exporters", json={"name": "ex", "path": str(tmp_path / "exports"),
                                           "repositories": ["web"]})
    before = client.get("/api/v1/exporters/ex").json()
    error = assert_refused(client.patch("/api/v1/exporters/ex", json={"path": None}))
    assert "path" in json.dumps(error)
    assert client.get("/api/v1/exporters/ex").json() == before


@pytest.mark.parametrize("name", ["archive.tar", "site.toc.json"])
def test_a_fifo_given_as_an_import_path_is_refused_without_blocking(client, tmp_path, name):
    fifo = tmp_path / "exports" / name
    os.mkfifo(fifo)
    client.post("/api/v1/importers", json={"name": "im"})
    answers = []
    request = threading.Thread(target=lambda: answers.append(
        client.post("/api/v1/importers/im/check", json={"path": str(fifo)})), daemon=True)
    request.start()
    request.join(10)
    if request.is_alive():  # blocked opening the FIFO: a writer lets it go
        with open(fifo, "wb"):
            pass
        request.join(10)
        pytest.fail("the request blocked on the FIFO")
    error = assert_refused(answers[0])
    assert "regular file" in error["message"], error


def test_an_orphan_protection_beyond_the_calendar_keeps_everything(client, runtime, workers):
    make_files(runtime, 2)  # units in no version: orphans

    def cleanup(seconds) -> dict:
        response = client.post("/api/v1/orphans/cleanup", json={"protection_seconds": seconds})
        assert response.status_code == 202, response.text
        task = wait_for_task(client, response.json()["href"])
        assert task["state"] == "completed", task["error"]
        return task["result"]

    for seconds in (99999999999, 315_000_000_000):
        assert cleanup(seconds)["content_deleted"] == 0
    assert cleanup(0)["content_deleted"] == 2
    for not_a_number in (False, "60"):
        assert_refused(client.post("/api/v1/orphans/cleanup",
                                   json={"protection_seconds": not_a_number}))


# -- a full disk ----------------------------------------------------------------------------

def _can_mount_a_small_disk() -> bool:
    try:
        return subprocess.run(["unshare", "-Urm", "true"], capture_output=True,
                              timeout=10).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


@pytest.fixture
def full_disk_server(tmp_path):
    """`pallet serve` whose data directory and SQLite database lie on an 8 MiB tmpfs of
    its own: mounted in a user and mount namespace (no root needed), so the disk is really
    full and every layer (SQLite, the upload files) meets ENOSPC as in production. The
    test reaches that disk through /proc/PID/root."""
    if not _can_mount_a_small_disk():
        pytest.skip("user namespaces are not available here, so no small disk can be mounted")
    data = tmp_path / "data"
    data.mkdir()
    port = free_port()
    env = dict(os.environ, PALLET_DATA_DIR=str(data), PALLET_PORT=str(port),
               PALLET_ADMIN_PASSWORD=PASSWORD, PALLET_WORKERS="1",
               PALLET_DATABASE_URL=f"sqlite:///{data / 'pallet.db'}",
               PALLET_LOG_LEVEL="warning")
    env.pop("PALLET_CONFIG", None)
    log_path = tmp_path / "server.log"
    with open(log_path, "ab") as log:
        process = subprocess.Popen(
            ["unshare", "-Urm", "sh", "-c", 'mount -t tmpfs -o size=8m tmpfs "$0" && exec "$@"',
             str(data), sys.executable, "-m", "pallet.cli.main", "serve"],
            env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        url = f"http://127.0.0.1:{port}"
        _wait_until_ready(url, process, log_path)
        yield url, Path(f"/proc/{process.pid}/root{data}")
    finally:
        stop(process)


def fill(disk: Path) -> Path:
    filler = disk / "filler"
    with open(filler, "wb") as out:
        try:
            while True:
                out.write(b"\0" * 65536)
                out.flush()
        except OSError as exc:
            assert exc.errno == errno.ENOSPC, exc
    return filler


@pytest.mark.slow
def test_a_full_disk_answers_503_with_a_sentence_and_changes_nothing(full_disk_server):
    url, disk = full_disk_server
    with httpx.Client(base_url=f"{url}/api/v1", auth=("admin", PASSWORD), timeout=10) as api:
        upload = api.post("/uploads", json={"size": 1 << 20}).json()
        filler = fill(disk)
        description = "x" * 9_000  # more than the free pages SQLite holds
        for response in (api.post("/repositories", json={"name": "web",
                                                         "description": description}),
                         api.put(upload["href"].removeprefix("/api/v1"), content=b"y" * 65536,
                                 headers={"Content-Range": f"bytes 0-65535/{1 << 20}",
                                          # refused before its body is read: a new
                                          # connection after it
                                          "Connection": "close"})):
            error = assert_refused(response, 503, "no_space")
            assert "disk is full" in error["message"]
        filler.unlink()
        assert api.get("/repositories/web").status_code == 404
        assert api.post("/repositories", json={"name": "web"}).status_code == 201


def test_an_archive_whose_publication_would_hide_a_content_file_is_refused(client, runtime,
                                                                           workers, tmp_path):
    """The source auto-publishes with options that collide with its own newest version
    (set after that version was made): importing that archive must not make the
    publication, nor anything else."""
    assert client.post("/api/v1/repositories", json={"name": "web"}).status_code == 201
    ids = make_files(runtime, 2, prefix="rel")  # rel/0.txt, rel/1.txt
    task = client.post("/api/v1/repositories/web/modify", json={"add_content": ids})
    assert wait_for_task(client, task.json()["href"])["state"] == "completed"
    client.patch("/api/v1/repositories/web", json={
        "autopublish": True, "publish_options": {"manifest": "rel/0.txt"}})
    client.post("/api/v1/exporters", json={"name": "ex", "path": str(tmp_path / "exports"),
                                           "repositories": ["web"]})
    export = wait_for_task(client, client.post("/api/v1/exporters/ex/export",
                                               json={}).json()["href"])
    assert export["state"] == "completed", export["error"]
    client.post("/api/v1/importers", json={"name": "im", "mapping": {"web": "copy"},
                                           "create_repositories": True})
    task = wait_for_task(client, client.post("/api/v1/importers/im/import", json={
        "path": export["result"]["toc"]}).json()["href"])
    assert task["state"] == "failed", task
    assert task["error"]["code"] == "path_collision", task["error"]
    assert client.get("/api/v1/repositories/copy").status_code == 404
    assert client.get("/api/v1/publications").json()["count"] == 0


# -- what a refusal says --------------------------------------------------------------------

def test_request_errors_name_the_field_in_a_sentence_without_pydantics_words(client):
    json_type = {"Content-Type": "application/json"}
    cases = [
        (client.post("/api/v1/repositories", content=b'{"name": "a",', headers=json_type),
         "body", "not valid JSON"),
        (client.post("/api/v1/content/file", json={"relative_path": "a", "sha256": "zz"}),
         "sha256", "sha256 must be 64 hexadecimal characters"),
        (client.post("/api/v1/repositories", json={}), "name", "is required"),
        (client.post("/api/v1/repositories", json={"name": "a", "colour": "red"}),
         "colour", "is not a field of this request"),
        (client.get("/api/v1/tasks", params={"limit": "many"}), "limit", "integer"),
    ]
    for response, field, words in cases:
        error = assert_refused(response)
        (problem, *_) = error["details"]["errors"]
        assert problem["field"] == field, error
        assert words in problem["problem"] and words in error["message"], error
        assert not any(raw in response.text for raw in (
            "pydantic", "https://", "Value error", "Field required", "Extra inputs")), error


@pytest.mark.parametrize("url, body", [
    ("/api/v1/remotes", '{"name": "up", "url": "http://up", "headers": {"X-A": "\\ud800"}}'),
    ("/api/v1/remotes", '{"name": "up", "url": "http://up", "headers": {"\\udc80": "a"}}'),
    ("/api/v1/repositories", '{"name": "web", "publish_options": {"manifest": "\\ud800"}}'),
])
def test_text_no_database_can_store_is_refused_wherever_it_is(client, url, body):
    error = assert_refused(raw_json(client, "POST", url, body))
    assert "not valid Unicode" in error["message"], error
