"""The transfer through the REST API: keys, exporters, exports (to files and streamed),
importers, checks and imports (from files and from an upload), and their permissions."""

from __future__ import annotations

import pytest

from conftest import basic, make_settings, wait_for_task
from factories import make_files
from pallet.auth.service import create_user


@pytest.fixture
def settings(tmp_path, database_url):
    (tmp_path / "exports").mkdir()
    return make_settings(tmp_path, database_url, allowed_export_dirs=[tmp_path / "exports"],
                         allowed_import_dirs=[tmp_path / "exports"], import_reserve_bytes=0)


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
