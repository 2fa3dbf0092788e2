"""Uploads through the REST API: an archive handed to an import or a check is that task's,
removed when it ends whatever the end; importers upload archives, and only their own."""

from __future__ import annotations

import hashlib

import pytest

from conftest import basic, export_settings, wait_for_task
from factories import make_files
from pallet.auth.service import create_user

CLERK = basic("clerk", "clerk-password-1")  # the importer role only
OTHER = basic("other", "other-password-1")  # the importer role only


@pytest.fixture
def settings(tmp_path, database_url):
    return export_settings(tmp_path, database_url)


@pytest.fixture
def web(client, runtime, workers, tmp_path):
    """A repository `web` with one version, its stream export, and an importer `im` that
    copies it into `copy`; users `clerk` and `other` with the importer role."""
    ids = make_files(runtime, 4)
    client.post("/api/v1/repositories", json={"name": "web"})
    task = client.post("/api/v1/repositories/web/modify", json={"add_content": ids})
    assert wait_for_task(client, task.json()["href"])["state"] == "completed"
    client.post("/api/v1/exporters", json={"name": "ex", "path": str(tmp_path / "exports"),
                                           "repositories": ["web"]})
    client.post("/api/v1/importers", json={"name": "im", "mapping": {"web": "copy"},
                                           "create_repositories": True})
    with runtime.db.write() as session:
        create_user(session, username="clerk", password="clerk-password-1", roles=["importer"])
        create_user(session, username="other", password="other-password-1", roles=["importer"])
    return client.get("/api/v1/exporters/ex/stream").content


def upload(client, data: bytes, headers=None) -> dict:
    """An upload holding `data`, sent in one chunk."""
    created = client.post("/api/v1/uploads", json={"size": len(data)}, headers=headers)
    assert created.status_code == 201, created.text
    body = created.json()
    sent = client.put(body["href"], content=data, headers={
        **(headers or {}), "Content-Range": f"bytes 0-{len(data) - 1}/{len(data)}"})
    assert sent.status_code == 200, sent.text
    return body


def finished(client, response) -> dict:
    assert response.status_code == 202, response.text
    return wait_for_task(client, response.json()["href"])


def gone(client, runtime, body: dict) -> bool:
    return (client.get(body["href"]).status_code == 404
            and not any(runtime.settings.uploads_dir.iterdir()))


def test_an_uploaded_archive_goes_when_its_check_or_import_ends(client, runtime, web):
    for action in ("check", "import"):
        body = upload(client, web)
        task = finished(client, client.post(f"/api/v1/importers/im/{action}",
                                            json={"upload": body["id"]}))
        assert task["state"] == "completed", task["error"]
        assert gone(client, runtime, body), action
    assert client.get("/api/v1/repositories/copy").status_code == 200

    cut = upload(client, web[: len(web) // 2])  # a readable header, then the end
    task = finished(client, client.post("/api/v1/importers/im/import",
                                        json={"upload": cut["id"]}))
    assert task["state"] == "failed" and "truncated" in task["error"]["message"]
    assert gone(client, runtime, cut)


def test_importers_upload_archives_of_their_own_and_never_commit_them(client, runtime, web):
    mine = upload(client, web, headers=CLERK)
    assert mine["created_by"] == "clerk"
    commit = client.post(f"{mine['href']}/commit", json={"sha256": "0" * 64}, headers=CLERK)
    assert commit.status_code == 403 and commit.json()["error"]["details"] == {"needs": "write"}

    # Another importer may neither write into it, delete it, nor import it.
    chunk = {"Content-Range": f"bytes 0-0/{len(web)}"}
    assert client.put(mine["href"], content=b"x", headers={**OTHER, **chunk}).status_code == 403
    assert client.delete(mine["href"], headers=OTHER).status_code == 403
    refused = client.post("/api/v1/importers/im/import", json={"upload": mine["id"]},
                          headers=OTHER)
    assert refused.status_code == 403 and "clerk" in refused.json()["error"]["message"]
    assert client.get(mine["href"]).json()["complete"] is True  # untouched

    task = finished(client, client.post("/api/v1/importers/im/import",
                                        json={"upload": mine["id"]}, headers=CLERK))
    assert task["state"] == "completed", task["error"]
    assert gone(client, runtime, mine)
    # A writer's upload is not an importer's either.
    theirs = upload(client, b"some bytes")
    assert client.delete(theirs["href"], headers=CLERK).status_code == 403
    assert client.delete(theirs["href"]).status_code == 204


def test_one_commit_task_makes_the_artifact_its_unit_and_the_version(client, runtime,
                                                                     workers):
    data = b"release notes\n" * 100
    sha256 = hashlib.sha256(data).hexdigest()
    client.post("/api/v1/repositories", json={"name": "docs"})
    body = upload(client, data)
    commit = f"{body['href']}/commit"
    refusals = [({"sha256": sha256, "relative_path": "../notes.txt"}, 400),
                ({"sha256": sha256, "repository": "docs"}, 400),
                ({"sha256": sha256, "relative_path": "notes.txt", "repository": "nope"}, 404)]
    for refused, status in refusals:  # before any task: the upload stays as it was
        assert client.post(commit, json=refused).status_code == status, refused
    assert client.get(body["href"]).json()["complete"] is True

    task = finished(client, client.post(commit, json={
        "sha256": sha256, "relative_path": "notes/a.txt", "repository": "docs"}))
    assert task["state"] == "completed", task["error"]
    assert task["name"] == "upload.commit" and task["result"]["version"] == 1
    unit = client.get(f"/api/v1/content/{task['result']['content']}").json()
    assert unit["fields"] == {"relative_path": "notes/a.txt", "sha256": sha256}
    assert "/api/v1/repositories/docs/versions/1" in task["created_resources"]
    assert gone(client, runtime, body)
