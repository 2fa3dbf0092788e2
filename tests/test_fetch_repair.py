"""Bytes that should be stored and are not: fetched from their remotes before an export or a
replication stream, and brought back by repair, against real HTTP servers on 127.0.0.1."""

from __future__ import annotations

import hashlib
import io
import json
import os

import pytest
from sqlalchemy import func, select

from pallet.artifacts.models import Artifact
from pallet.content.models import ContentArtifact
from pallet.transfer.reader import open_stream
from tests.conftest import make_settings, wait_for_task
from tests.http_fixtures import file_server, write_repository  # noqa: F401

FILES = {"a.txt": b"alpha\n", "dir/b.txt": b"bravo" * 200, "dir/c.bin": os.urandom(200_000)}
SHA = {path: hashlib.sha256(data).hexdigest() for path, data in FILES.items()}


@pytest.fixture
def settings(tmp_path, database_url):
    (tmp_path / "exports").mkdir()
    return make_settings(tmp_path, database_url, allowed_export_dirs=[tmp_path / "exports"])


@pytest.fixture
def upstream(tmp_path, file_server):
    write_repository(tmp_path / "upstream", FILES)
    return file_server(tmp_path / "upstream")


def created(response, status: int = 201) -> dict:
    assert response.status_code == status, response.text
    return response.json()


def task_of(client, response) -> dict:
    return wait_for_task(client, created(response, 202)["href"])


def mirror(client, upstream, policy: str = "on_demand", name: str = "mirror",
           **remote) -> None:
    """A repository synced from `upstream` with `policy`."""
    created(client.post("/api/v1/remotes", json={
        "name": name, "url": upstream.url, "policy": policy, "max_retries": 0,
        "connect_timeout": 5, "read_timeout": 5, **remote}))
    created(client.post("/api/v1/repositories", json={"name": name, "remote": name}))
    task = task_of(client, client.post(f"/api/v1/repositories/{name}/sync", json={}))
    assert task["state"] == "completed", task["error"]


def exporter(client, tmp_path, name: str = "to-site") -> None:
    created(client.post("/api/v1/exporters", json={
        "name": name, "path": str(tmp_path / "exports"), "repositories": ["mirror"]}))


def stored(runtime) -> int:
    with runtime.db.read() as session:
        return session.scalar(select(func.count()).select_from(Artifact))


def not_downloaded(runtime) -> int:
    with runtime.db.read() as session:
        return session.scalar(select(func.count()).select_from(ContentArtifact)
                              .where(ContentArtifact.artifact_id.is_(None)))


def verified(runtime) -> bool:
    """Every file's bytes are stored, and are the right ones."""
    return all(runtime.storage.exists(sha) and runtime.storage.hash_stored(sha) == sha
               for sha in SHA.values())


# -- export and replication of on-demand content -----------------------------------------------

def test_export_fetches_on_demand_files_first(client, workers, runtime, upstream, tmp_path):
    mirror(client, upstream)
    assert stored(runtime) == 0
    exporter(client, tmp_path)
    task = task_of(client, client.post("/api/v1/exporters/to-site/export", json={}))
    assert task["state"] == "completed", task["error"]
    assert task["result"]["artifacts"] == 3
    stages = {p["stage"]: p for p in task["progress"]}
    assert stages["fetching missing files"]["done"] == stages["fetching missing files"][
        "total"] == 3
    assert not_downloaded(runtime) == 0 and verified(runtime)
    assert all(upstream.count(f"/{path}") == 1 for path in FILES)
    # Fetched once: the next export finds them stored.
    task = task_of(client, client.post("/api/v1/exporters/to-site/export", json={}))
    assert task["state"] == "completed" and upstream.count("/a.txt") == 1


def test_export_fails_up_front_when_a_remote_cannot_deliver(client, workers, runtime,
                                                            upstream, tmp_path):
    mirror(client, upstream)
    exporter(client, tmp_path)
    upstream.fail("/a.txt", status=404, times=10)
    upstream.corrupt("/dir/b.txt", b"x" * 1000)  # the right size, the wrong bytes
    task = task_of(client, client.post("/api/v1/exporters/to-site/export", json={}))
    assert task["state"] == "failed"
    error = task["error"]
    assert error["code"] == "not_downloaded" and error["details"]["count"] == 2
    assert "could not be fetched from their remotes" in error["message"]
    assert sorted(m["relative_path"] for m in error["details"]["missing"]) == \
        ["a.txt", "dir/b.txt"]
    reasons = {m["relative_path"]: m["reason"] for m in error["details"]["missing"]}
    assert "404" in reasons["a.txt"] and "sha256" in reasons["dir/b.txt"]
    assert list((tmp_path / "exports").iterdir()) == []
    # What could be fetched is stored (verified); the bad bytes are not.
    assert not runtime.storage.exists(SHA["dir/b.txt"])
    assert runtime.storage.hash_stored(SHA["dir/c.bin"]) == SHA["dir/c.bin"]


def test_a_remote_that_keeps_failing_is_given_up_on(client, workers, runtime, tmp_path,
                                                    file_server):
    from pallet.remotes.fetch import GIVE_UP

    files = {f"gone/{i}.txt": f"file {i}".encode() for i in range(GIVE_UP + 20)}
    write_repository(tmp_path / "gone", files)
    upstream = file_server(tmp_path / "gone")
    mirror(client, upstream, download_concurrency=2)
    for path in files:
        (tmp_path / "gone" / path).unlink()
    exporter(client, tmp_path)
    task = task_of(client, client.post("/api/v1/exporters/to-site/export", json={}))
    assert task["state"] == "failed" and task["error"]["details"]["count"] == len(files)
    asked = sum(upstream.count(f"/{path}") for path in files)
    assert GIVE_UP <= asked <= GIVE_UP + 1  # two at a time: one may be on its way
    assert "not tried again" in str(task["error"]["details"]["missing"])


def test_export_without_fetching_refuses_as_before(client, workers, runtime, upstream,
                                                   tmp_path):
    mirror(client, upstream)
    exporter(client, tmp_path)
    task = task_of(client, client.post("/api/v1/exporters/to-site/export",
                                       json={"fetch": False}))
    assert task["state"] == "failed" and task["error"]["code"] == "not_downloaded"
    assert "never downloaded" in task["error"]["message"]
    assert upstream.count("/a.txt") == 0 and stored(runtime) == 0
    response = client.get("/api/v1/exporters/to-site/stream", params={"fetch": "false"})
    assert response.status_code == 400 and response.json()["error"]["code"] == "not_downloaded"


def test_streams_fetch_on_demand_files_first(client, workers, runtime, upstream, tmp_path):
    mirror(client, upstream)
    exporter(client, tmp_path)
    response = client.get("/api/v1/exporters/to-site/stream")
    assert response.status_code == 200, response.text
    assert open_stream(io.BytesIO(response.content)).header().artifacts == 3
    assert verified(runtime)


def test_a_replication_stream_fetches_on_demand_files_first(client, workers, runtime,
                                                            upstream):
    mirror(client, upstream)
    response = client.post("/api/v1/replication/stream",
                           json={"repositories": [{"name": "mirror"}], "fetch": False})
    assert response.status_code == 400 and response.json()["error"]["code"] == "not_downloaded"
    response = client.post("/api/v1/replication/stream",
                           json={"repositories": [{"name": "mirror"}]})
    assert response.status_code == 200, response.text
    assert open_stream(io.BytesIO(response.content)).header().artifacts == 3
    assert verified(runtime)


# -- repair ------------------------------------------------------------------------------------

def damage(runtime) -> None:
    """dir/c.bin's stored bytes altered (a different size), a.txt's gone, dir/b.txt's
    altered in place (the same size)."""
    runtime.storage.path(SHA["dir/c.bin"]).write_bytes(b"tampered")
    runtime.storage.delete(SHA["a.txt"])
    runtime.storage.path(SHA["dir/b.txt"]).write_bytes(b"B" * 1000)


def distribute(client) -> None:
    created(client.post("/api/v1/distributions", json={
        "name": "mirror", "base_path": "mirror",
        "repository_version": {"repository": "mirror", "version": 1}}))


def repair(client, *, number: int = 1, report_only: bool = False) -> dict:
    task = task_of(client, client.post(f"/api/v1/repositories/mirror/versions/{number}/repair",
                                       json={"report_only": report_only}))
    assert task["state"] == "completed", task["error"]
    return task["result"]


def test_repair_restores_what_a_remote_delivers_again(client, workers, runtime, upstream):
    mirror(client, upstream, policy="immediate")
    damage(runtime)
    report = repair(client, report_only=True)
    assert (report["missing"], report["corrupt"], report["restored"], report["broken"]) == \
        (1, 2, 0, 3)
    assert not verified(runtime)  # a report changes nothing
    report = repair(client)
    assert (report["missing"], report["corrupt"], report["restored"], report["broken"]) == \
        (1, 2, 3, 0)
    assert sorted(a["relative_path"] for a in report["restored_artifacts"]) == sorted(FILES)
    assert verified(runtime)
    assert repair(client)["checked"] == 3 and repair(client)["broken"] == 0


def test_repair_says_what_it_could_not_restore_and_it_is_not_served(client, workers, runtime,
                                                                     upstream):
    from starlette.testclient import TestClient

    from pallet.api.app import create_server_app

    mirror(client, upstream, policy="immediate")
    distribute(client)
    damage(runtime)
    upstream.fail("/dir/c.bin", status=404, times=100)
    report = repair(client)
    assert (report["restored"], report["broken"]) == (2, 1)
    [broken] = report["broken_artifacts"]
    assert broken["relative_path"] == "dir/c.bin" and "404" in broken["reason"]
    assert not runtime.storage.exists(SHA["dir/c.bin"])  # the bad bytes are gone
    with TestClient(create_server_app(runtime)) as web:
        response = web.get("/pallet/content/mirror/dir/c.bin")
        assert response.status_code >= 500 and response.content != b"tampered"
        assert web.get("/pallet/content/mirror/a.txt").content == FILES["a.txt"]
    # Still broken: every repair says so, until a remote delivers again.
    assert repair(client)["broken"] == 1
    upstream.reset()
    assert repair(client)["broken"] == 0 and verified(runtime)


def test_the_content_app_refuses_bytes_that_are_not_the_recorded_ones(client, workers, runtime,
                                                                      upstream):
    from starlette.testclient import TestClient

    from pallet.api.app import create_server_app

    mirror(client, upstream, policy="immediate")
    distribute(client)
    damage(runtime)
    with TestClient(create_server_app(runtime)) as web:
        for path in FILES:  # a large file of another size, a small one of the same size
            response = web.get(f"/pallet/content/mirror/{path}")
            assert response.status_code == 500, path
            assert b"repair" in response.content


def test_an_immediate_sync_refetches_stored_files_missing_from_the_store(client, workers,
                                                                         runtime, upstream):
    mirror(client, upstream, policy="immediate")
    runtime.storage.delete(SHA["a.txt"])
    task = task_of(client, client.post("/api/v1/repositories/mirror/sync", json={}))
    assert task["state"] == "completed", task["error"]
    assert task["result"]["version"] is None and task["result"]["downloaded"] == 1
    assert verified(runtime) and upstream.count("/a.txt") == 2


def test_the_repair_commands_exit_non_zero_while_anything_stays_broken(tmp_path):
    from tests.servers import Servers
    from tests.test_transfer_cli import pallet

    servers = Servers(tmp_path)
    try:
        server = servers.start("one")
        url = server.url
        (tmp_path / "a.txt").write_bytes(b"uploaded, no remote\n" * 100)
        pallet(url, "repository", "create", "fixme")
        pallet(url, "upload", "file", str(tmp_path / "a.txt"), "--repository", "fixme")
        sha = hashlib.sha256((tmp_path / "a.txt").read_bytes()).hexdigest()
        assert pallet(url, "version", "repair", "fixme", "1").returncode == 0
        (server.data_dir / "artifacts" / sha[:2] / sha).write_bytes(b"rotten")

        reported = pallet(url, "version", "repair", "fixme", "1", "--report-only")
        assert "corrupt" in reported.stdout and "a.txt" in reported.stdout
        refused = pallet(url, "version", "repair", "fixme", "1", "--json", check=False)
        assert refused.returncode == 1 and "could not be restored" in refused.stderr
        [broken] = json.loads(refused.stdout)["result"]["broken_artifacts"]
        assert broken["reason"] == "no remote offers these bytes"
        whole = pallet(url, "repository", "repair", "fixme", check=False)
        assert whole.returncode == 1 and "missing" in whole.stdout
    finally:
        servers.close()
