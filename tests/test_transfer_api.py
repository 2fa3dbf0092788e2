"""The transfer through the REST API: keys, exporters, exports (to files and streamed),
importers, checks and imports (from files and from an upload), and their permissions."""

from __future__ import annotations

import json
import time

import pytest

from conftest import basic, export_settings, wait_for_task
from factories import make_files
from pallet.auth.service import create_user


@pytest.fixture
def settings(tmp_path, database_url):
    return export_settings(tmp_path, database_url, import_too=True)


@pytest.fixture
def web(client, runtime, workers):
    """A repository `web` with two versions."""
    ids = make_files(runtime, 8)
    assert client.post("/api/v1/repositories", json={"name": "web"}).status_code == 201
    for batch in (ids[:5], ids[5:]):
        task = client.post("/api/v1/repositories/web/modify", json={"add_content": batch})
        assert wait_for_task(client, task.json()["href"])["state"] == "completed"
    return ids


def completed(client, response) -> dict:
    assert response.status_code == 202, response.text
    task = wait_for_task(client, response.json()["href"])
    assert task["state"] == "completed", task["error"]
    return task


def version(client, name):
    body = client.get(f"/api/v1/repositories/{name}").json()
    return client.get(body["latest_version_href"]).json()


def test_export_check_and_import_through_the_api(client, web, tmp_path):
    key = client.post("/api/v1/signing-keys", json={"name": "release"}).json()
    exporter = client.post("/api/v1/exporters", json={
        "name": "ex", "path": str(tmp_path / "exports"), "repositories": ["web"],
        "signing_key": "release"})
    assert exporter.status_code == 201, exporter.text
    task = completed(client, client.post("/api/v1/exporters/ex/export", json={}))
    export = client.get(task["created_resources"][0]).json()
    assert export["signed_by"] == key["key_id"] and export["versions"][0]["version"] == 2

    client.post("/api/v1/importers", json={"name": "im", "mapping": {"web": "copy"},
                                           "create_repositories": True,
                                           "trusted_keys": [key["public_key"]],
                                           "require_signature": True})
    toc = task["result"]["toc"]
    plan = completed(client, client.post("/api/v1/importers/im/check", json={"path": toc}))
    assert plan["result"]["repositories"][0]["destination"] == "copy"
    assert client.get("/api/v1/repositories/copy").status_code == 404  # a check changes nothing
    completed(client, client.post("/api/v1/importers/im/import", json={"path": toc}))
    assert version(client, "copy")["digest"] == version(client, "web")["digest"]
    assert client.get("/api/v1/imports").json()["count"] == 1

    assert client.delete(f"/api/v1/exports/{export['id']}").status_code == 204
    assert not (tmp_path / "exports" / export["toc_file"]).exists()


def test_a_streamed_export_uploaded_and_imported(client, web, tmp_path):
    client.post("/api/v1/exporters", json={"name": "ex", "path": str(tmp_path / "exports"),
                                           "repositories": ["web"]})
    archive = client.get("/api/v1/exporters/ex/stream")
    assert archive.status_code == 200 and archive.headers["content-type"] == "application/x-tar"
    data = archive.content
    upload = client.post("/api/v1/uploads", json={"size": len(data)}).json()
    half = len(data) // 2
    for start, end in ((0, half - 1), (half, len(data) - 1)):
        answer = client.put(upload["href"], content=data[start:end + 1],
                            headers={"Content-Range": f"bytes {start}-{end}/{len(data)}"})
        assert answer.status_code == 200, answer.text
    client.post("/api/v1/importers", json={"name": "im", "mapping": {"web": "copy"},
                                           "create_repositories": True})
    completed(client, client.post("/api/v1/importers/im/import",
                                  json={"upload": upload["id"]}))
    assert version(client, "copy")["digest"] == version(client, "web")["digest"]
    assert client.get("/api/v1/exports").json()["results"][0]["directory"] is None


def test_export_and_import_are_permissions_of_their_own(client, runtime, web, tmp_path):
    with runtime.db.write() as session:
        create_user(session, username="porter", password="porter-password-1",
                    roles=["exporter"])
        create_user(session, username="clerk", password="clerk-password-1", roles=["viewer"])
    porter, clerk = basic("porter", "porter-password-1"), basic("clerk", "clerk-password-1")
    body = {"name": "ex", "path": str(tmp_path / "exports"), "repositories": ["web"]}
    assert client.post("/api/v1/exporters", json=body, headers=clerk).status_code == 403
    assert client.post("/api/v1/exporters", json=body, headers=porter).status_code == 201
    assert client.post("/api/v1/importers", json={"name": "im"},
                       headers=porter).status_code == 403
    assert client.post("/api/v1/repositories", json={"name": "x"},
                       headers=porter).status_code == 403


def test_paths_outside_the_allowed_directories_are_refused(client, web, tmp_path):
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    (tmp_path / "exports" / "link").symlink_to(outside)
    for path in (str(outside), str(tmp_path / "exports" / "link"), "relative/dir"):
        answer = client.post("/api/v1/exporters", json={"name": "ex", "path": path,
                                                        "repositories": ["web"]})
        assert answer.status_code == 400, path
    client.post("/api/v1/importers", json={"name": "im"})
    answer = client.post("/api/v1/importers/im/check", json={"path": "/etc/passwd"})
    assert answer.status_code == 400 and "allowed import director" in answer.text


def test_a_publication_written_as_a_plain_tree(client, web, tmp_path):
    task = completed(client, client.post("/api/v1/publications", json={"repository": "web"}))
    publication = task["result"]["publication"]
    outside = client.post(f"/api/v1/publications/{publication}/tree",
                          json={"path": str(tmp_path), "method": "copy"})
    assert outside.status_code == 400
    done = completed(client, client.post(f"/api/v1/publications/{publication}/tree",
                                         json={"path": str(tmp_path / "exports" / "site"),
                                               "method": "symlink"}))
    assert done["result"]["files"] == 8
    manifest = (tmp_path / "exports" / "site" / "PULP_MANIFEST").read_text()
    assert len(manifest.splitlines()) == 8
    assert (tmp_path / "exports" / "site" / "f" / "0.txt").is_symlink()


def test_an_archive_streamed_in_the_request_body_imports(client, runtime, web, tmp_path):
    client.post("/api/v1/exporters", json={"name": "ex", "path": str(tmp_path / "exports"),
                                           "repositories": ["web"]})
    data = client.get("/api/v1/exporters/ex/stream").content
    client.post("/api/v1/importers", json={"name": "im", "mapping": {"web": "copy"},
                                           "create_repositories": True})
    answer = client.post("/api/v1/importers/im/import-stream", content=data,
                         headers={"Content-Type": "application/x-tar"})
    assert answer.status_code == 200, answer.text
    task = answer.json()
    assert task["state"] == "completed", task["error"]
    assert task["name"] == "transfer.import"
    assert version(client, "copy")["digest"] == version(client, "web")["digest"]

    cut = client.post("/api/v1/importers/im/import-stream", content=data[: len(data) // 2])
    assert cut.json()["state"] == "failed" and "truncated" in cut.json()["error"]["message"]


def test_a_waiting_task_bound_to_a_vanished_worker_is_failed(runtime):
    from pallet.tasks.service import enqueue, get_task
    from pallet.tasks.worker import reap_dead_workers
    with runtime.db.write() as session:
        task_id = enqueue(session, "transfer.import", exclusive=["repository:1"],
                          bound_to="request@gone:1:abc", importer_id=1).id
    reap_dead_workers(runtime)
    with runtime.db.read() as session:
        task = get_task(session, task_id)
        assert task.state == "failed" and task.error["code"] == "worker_lost"


def _stalled_import(port: int, auth: dict[str, str], start: bytes | None = None
                    ) -> "socket.socket":
    """An import-stream request that sends its headers and `start`, by default 100 KB of a
    header member that announces 200 KB, then nothing."""
    import socket
    from pallet.transfer import layout
    from pallet.transfer.tarstream import header as tar_header
    connection = socket.create_connection(("127.0.0.1", port), timeout=30)
    head = (f"POST /api/v1/importers/im/import-stream HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            f"Authorization: {auth['Authorization']}\r\nContent-Type: application/x-tar\r\n"
            f"Content-Length: {10 << 20}\r\n\r\n").encode()
    if start is None:
        start = tar_header(layout.HEADER, 200_000) + b"{" * 100_000
    connection.sendall(head + start)
    return connection


def _answer(connection) -> tuple[int, bytes]:
    data = b""
    while b"\r\n\r\n" not in data or len(data.split(b"\r\n\r\n", 1)[1]) == 0:
        block = connection.recv(65536)
        if not block:
            break
        data += block
    return int(data.split(b" ", 2)[1]), data


@pytest.mark.slow
def test_stalled_streamed_imports_neither_hold_their_locks_nor_stop_the_api(tmp_path):
    """41 requests that stall after 100 KB: the server still answers at once, refuses the
    streams beyond its bound, and fails the others when their body has been idle too long."""
    import httpx
    from tests.servers import Servers
    from tests.test_cli import PASSWORD
    servers = Servers(tmp_path)
    try:
        server = servers.start("s", PALLET_IMPORT_STREAMS="2",
                               PALLET_IMPORT_STREAM_IDLE_SECONDS="3")
        auth = basic("admin", PASSWORD)
        with httpx.Client(base_url=f"{server.url}/api/v1", headers=auth, timeout=5) as api:
            assert api.post("/importers", json={"name": "im"}).status_code == 201
            stalled = [_stalled_import(server.port, auth) for _ in range(41)]
            time.sleep(1)
            started = time.monotonic()
            assert api.get("/status").status_code == 200  # within the client's 5 s
            assert api.get("/importers").status_code == 200
            assert time.monotonic() - started < 5
            answers = [_answer(connection) for connection in stalled]
            codes = sorted(code for code, _ in answers)
            assert codes.count(503) == 39 and codes[:2] == [408, 408], codes
            assert all(b"import_stream_idle_seconds" in data for code, data in answers
                       if code == 408)
            for connection in stalled:
                connection.close()

            # Stalled after its header, as a running task holding its locks: it fails, and
            # frees them for the next import.
            assert api.post("/repositories", json={"name": "web"}).status_code == 201
            archive = _empty_archive(api)
            header_only = archive[:archive.index(b"pallet-export/toc.json")]
            connection = _stalled_import(server.port, auth, header_only)
            code, data = _answer(connection)
            task = json.loads(data.split(b"\r\n\r\n", 1)[1])
            assert code == 200 and task["state"] == "failed", task
            assert task["error"]["code"] == "stalled"
            answer = api.post("/importers/im/import-stream", content=archive)
            assert answer.json()["state"] == "completed", answer.text
    finally:
        servers.close()


def _empty_archive(api) -> bytes:
    """A single-stream archive of the empty repository `web`, written by hand as the
    server's exporters may write only under allowed directories."""
    import io
    from pallet.transfer.chunks import StreamSink
    from pallet.transfer.writer import ArchiveWriter
    digest = api.get("/repositories/web/versions/0").json()["digest"]
    document = {"format": "pallet-export", "format_version": 1, "export_id": "e" * 32,
                "created_at": "2026-12-01T00:00:00+00:00", "exporter": "x",
                "incremental": False, "artifacts": 0, "artifact_bytes": 0,
                "repositories": [{"index": 0, "name": "web", "type": "file",
                                  "version": 1, "digest": digest, "counts": {},
                                  "added": 0, "removed": 0}]}
    out = io.BytesIO()
    writer = ArchiveWriter(StreamSink(out))
    writer.header(document)
    writer.finish(lambda chunks: {"format": "pallet-export", "format_version": 1,
                                  "export_id": "e" * 32, "summary": document,
                                  "chunks": [c.as_dict() for c in chunks]})
    return out.getvalue()
