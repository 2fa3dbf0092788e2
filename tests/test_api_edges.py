"""The REST API's edges: paths that reach the file system (NUL bytes, unencodable text,
FIFOs), a full disk, absurd numbers, and what a refusal looks like."""

from __future__ import annotations

import json
import os
import threading

import pytest

from conftest import make_settings, wait_for_task
from factories import make_files


@pytest.fixture
def settings(tmp_path, database_url):
    (tmp_path / "exports").mkdir()
    return make_settings(tmp_path, database_url, allowed_export_dirs=[tmp_path / "exports"],
                         allowed_import_dirs=[tmp_path / "exports"], import_reserve_bytes=0)


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
