"""Orphan cleanup and reclaiming space: what goes, what stays, and a race against uploads and
modify that must lose nothing."""

from __future__ import annotations

import hashlib
import random
import json
import os
import subprocess
import sys
import threading
import time
from datetime import timedelta

import httpx
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select, update

from pallet.api.app import create_app
from pallet.artifacts.models import Artifact
from pallet.content.models import Content, ContentArtifact
from pallet.content.service import create_content
from pallet.db.base import utcnow
from pallet.distributions.models import Distribution
from pallet.publications.models import Publication
from pallet.publications.service import publish
from pallet.remotes.models import Remote, RemoteArtifact
from pallet.repositories.models import Repository, RepositoryVersion
from pallet.repositories.repair import check_artifacts
from pallet.repositories.service import create_repository, get_repository
from pallet.repositories.versions import create_version, get_version
from pallet.tasks.models import Task
from tests.factories import file_unit, store_bytes
from tests.http_fixtures import file_server, write_repository  # noqa: F401
from tests.conftest import ADMIN_PASSWORD, basic, wait_for_task
from tests.processes import SERVER_START_SECONDS, free_port, pallet_env, stop, wait_until

CLEANUP, RECLAIM = "/api/v1/orphans/cleanup", "/api/v1/orphans/reclaim"
HOUR = 3600


# -- building data through the services -----------------------------------------------------

store = store_bytes


unit = file_unit


def repository(runtime, name: str) -> None:
    with runtime.db.write() as session:
        create_repository(session, runtime.plugins, name=name, type="file")


def version(runtime, name: str, ids: list[int]) -> int:
    """A new version of `name` holding exactly `ids`; its number."""
    with runtime.db.write() as session:
        repo = get_repository(session, name)
        made = create_version(session, runtime.plugins, repo, add=ids, remove_all=True)
        return made.number


def age(runtime, model, where, seconds: float = 2 * HOUR) -> None:
    with runtime.db.write() as session:
        session.execute(update(model).where(where)
                        .values(created_at=utcnow() - timedelta(seconds=seconds)))


def age_everything(runtime) -> None:
    age(runtime, Content, Content.id > 0)
    age(runtime, Artifact, Artifact.id > 0)


def run(client, response) -> dict:
    assert response.status_code == 202, response.text
    task = wait_for_task(client, response.json()["href"])
    assert task["state"] == "completed", task
    return task


def artifact_of(runtime, content_id: int) -> int | None:
    with runtime.db.read() as session:
        return session.scalar(select(ContentArtifact.artifact_id)
                              .where(ContentArtifact.content_id == content_id))


def row_exists(runtime, model, row_id: int) -> bool:
    with runtime.db.read() as session:
        return session.get(model, row_id) is not None


def sha256_of(runtime, artifact_id: int) -> str:
    with runtime.db.read() as session:
        return session.get(Artifact, artifact_id).sha256


def digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# -- cleanup ---------------------------------------------------------------------------------

def test_cleanup_deletes_old_orphans_and_their_files_and_keeps_the_rest(runtime, client,
                                                                        workers):
    repository(runtime, "r")
    orphan = unit(runtime, "orphan.txt", b"orphan bytes")
    in_old = unit(runtime, "old.txt", b"only in version 1")
    in_new = unit(runtime, "new.txt", b"in the newest version")
    shares = unit(runtime, "shares.txt", b"in the newest version")  # same bytes as in_new
    version(runtime, "r", [in_old])
    version(runtime, "r", [in_new])
    loose = store(runtime, b"an artifact of no content")
    missing = store(runtime, b"recorded, but its file is gone already")
    runtime.storage.delete(missing)
    with runtime.db.write() as session:
        repo = get_repository(session, "r")
        publication, _ = publish(session, runtime.plugins, runtime.storage, repo,
                                 get_version(session, repo, 1))
        manifest = publication.metadata_files[0].artifact_id
    age_everything(runtime)
    young = unit(runtime, "young.txt", b"created just now")
    young_loose = store(runtime, b"stored just now")
    orphan_artifact = artifact_of(runtime, orphan)

    task = run(client, client.post(CLEANUP, json={"protection_seconds": HOUR}))

    assert task["result"] == {"content_deleted": 2, "artifacts_deleted": 3,
                              "bytes_freed": len(b"orphan bytes")
                              + len(b"an artifact of no content")}
    assert {lock["resource"]: lock["exclusive"] for lock in task["locks"]} == {"orphans": True}
    assert [s["stage"] for s in task["progress"]] == ["deleting orphan content",
                                                      "deleting orphan artifacts"]
    assert not row_exists(runtime, Content, orphan) and not row_exists(runtime, Content, shares)
    assert not row_exists(runtime, Artifact, orphan_artifact)
    for gone in (digest(b"orphan bytes"), loose, missing):
        assert not runtime.storage.exists(gone)
    with runtime.db.read() as session:
        assert session.scalar(select(Artifact.id).where(Artifact.sha256.in_(
            [loose, missing]))) is None
    # Kept: content in an old or the newest version, what is younger than the protection,
    # an artifact another unit still links, and a publication's metadata file.
    for kept in (in_old, in_new, young):
        assert row_exists(runtime, Content, kept)
        assert runtime.storage.exists(sha256_of(runtime, artifact_of(runtime, kept)))
    assert row_exists(runtime, Artifact, manifest)
    assert runtime.storage.exists(sha256_of(runtime, manifest))
    assert runtime.storage.exists(young_loose)

    # Nothing is left to delete now, and with no protection the young ones go too.
    again = run(client, client.post(CLEANUP, json={"protection_seconds": HOUR}))
    assert again["result"] == {"content_deleted": 0, "artifacts_deleted": 0, "bytes_freed": 0}
    last = run(client, client.post(CLEANUP, json={"protection_seconds": 0}))
    assert last["result"]["content_deleted"] == 1 and last["result"]["artifacts_deleted"] == 2
    assert not runtime.storage.exists(young_loose)
    assert row_exists(runtime, Content, in_old) and row_exists(runtime, Artifact, manifest)


def test_a_committed_upload_survives_cleanup_with_the_default_protection(client, runtime,
                                                                        workers):
    data = b"uploaded, its content not created yet"
    href = client.post("/api/v1/uploads", json={"size": len(data)}).json()["href"]
    client.put(href, content=data, headers={"Content-Range": f"bytes 0-{len(data) - 1}/"
                                                             f"{len(data)}"})
    commit = run(client, client.post(f"{href}/commit", json={"sha256": digest(data)}))
    assert {"resource": "orphans", "exclusive": False} in commit["locks"]

    task = run(client, client.post(CLEANUP))  # no body: the server's default protection
    with runtime.db.read() as session:
        assert session.get(Task, task["id"]).args == {
            "protection_seconds": runtime.settings.orphan_protection_seconds}
    assert task["result"]["artifacts_deleted"] == 0
    assert runtime.storage.exists(digest(data))
    created = client.post("/api/v1/content/file", json={"relative_path": "u.txt",
                                                         "sha256": digest(data)})
    assert created.status_code == 201, created.text

    # Only the window protected it: once the unit is gone too, no protection deletes both.
    run(client, client.post(CLEANUP, json={"protection_seconds": 0}))
    assert not runtime.storage.exists(digest(data))


def test_cleanup_and_reclaim_refuse_bad_requests(client):
    for body in ({"protection_seconds": -1}, {"protection_seconds": "soon"},
                 {"protection_seconds": 1e300}, {"protection": 5}):
        response = client.post(CLEANUP, json=body)
        assert response.status_code == 400, (body, response.text)
    for body in ({}, {"repositories": []}, {"repositories": "r"},
                 {"repositories": ["r"], "keep": True}):
        response = client.post(RECLAIM, json=body)
        assert response.status_code == 400, (body, response.text)
    response = client.post(RECLAIM, json={"repositories": ["nope"]})
    assert response.status_code == 404 and response.json()["error"]["code"] == "not_found"


def test_viewers_may_not_clean_up_or_reclaim(client):
    assert client.post("/api/v1/users", json={"username": "vic", "password": "viewer-pass",
                                              "roles": ["viewer"]}).status_code == 201
    for path, body in ((CLEANUP, {}), (RECLAIM, {"repositories": ["r"]})):
        response = client.post(path, json=body, headers=basic("vic", "viewer-pass"))
        assert response.status_code == 403, response.text


# -- the race --------------------------------------------------------------------------------

@pytest.fixture
def racing_clients(runtime, client):
    """Two more API clients (one per thread) that answer a server error as a response."""
    clients = [TestClient(create_app(runtime), headers=basic("admin", ADMIN_PASSWORD),
                          raise_server_exceptions=False) for _ in range(2)]
    for api in clients:
        api.__enter__()
    yield clients
    for api in clients:
        api.__exit__(None, None, None)


def _commit(api, data: bytes) -> None:
    href = api.post("/api/v1/uploads", json={"size": len(data)}).json()["href"]
    api.put(href, content=data,
            headers={"Content-Range": f"bytes 0-{len(data) - 1}/{len(data)}"})
    task = wait_for_task(api, api.post(f"{href}/commit", json={"sha256": digest(data)})
                         .json()["href"])
    assert task["state"] == "completed", task


def _place(api, index: int, attempts: int = 10) -> bool:
    """Upload a file, make it a unit and add it to repository r; start over whenever a
    cleanup took the artifact or the unit first. True once it is in a version."""
    data = f"race unit {index} ".encode() * (index + 1)
    for _ in range(attempts):
        _commit(api, data)
        # Again: this commit finds the bytes stored, as an orphan a cleanup may be deleting.
        _commit(api, data)
        created = api.post("/api/v1/content/file", json={"relative_path": f"race/{index}",
                                                          "sha256": digest(data)})
        if created.status_code not in (200, 201):
            continue  # the cleanup deleted the artifact first
        modify = api.post("/api/v1/repositories/r/modify",
                          json={"add_content": [created.json()["id"]]})
        task = wait_for_task(api, modify.json()["href"])
        if task["state"] == "completed":
            return True
    return False


def test_cleanup_racing_uploads_and_modify_loses_nothing(runtime, client, workers,
                                                         racing_clients, monkeypatch):
    # Widen the window between storing an upload's bytes and recording its artifact, where
    # a cleanup running alongside would delete the bytes.
    ingest = runtime.storage.ingest

    def slow_ingest(*args, **kwargs):
        stored = ingest(*args, **kwargs)
        time.sleep(0.1)
        return stored

    monkeypatch.setattr(runtime.storage, "ingest", slow_ingest)
    assert client.post("/api/v1/repositories", json={"name": "r"}).status_code == 201
    cleaner, placer = racing_clients
    stop, cleanups, problems = threading.Event(), [], []

    def clean() -> None:
        pause = random.Random(3)
        while not stop.is_set():
            task = wait_for_task(cleaner, cleaner.post(
                CLEANUP, json={"protection_seconds": 0}).json()["href"])
            cleanups.append(task)
            if task["state"] != "completed":
                problems.append(task)
            stop.wait(pause.uniform(0, 0.2))  # sometimes a unit gets into a version between

    thread = threading.Thread(target=clean, daemon=True)
    thread.start()
    try:
        placed = [_place(placer, i) for i in range(8)]
    finally:
        stop.set()
        thread.join(60)
    assert not thread.is_alive() and not problems, problems
    assert sum(placed) >= 4 and len(cleanups) >= 3, (placed, len(cleanups))
    assert sum(t["result"]["artifacts_deleted"] for t in cleanups) > 0  # it did race

    # One more cleanup with no protection, then every version has every byte, verified.
    run(client, client.post(CLEANUP, json={"protection_seconds": 0}))
    with runtime.db.read() as session:
        repo = get_repository(session, "r")
        numbers = list(session.scalars(select(RepositoryVersion.number)
                                       .where(RepositoryVersion.repository_id == repo.id)))
        assert len(numbers) == sum(placed) + 1
        for number in numbers:
            report = check_artifacts(session, runtime.storage, repo, number,
                                     lambda *args: None)
            assert report["checked"] == number
            assert (report["missing"], report["corrupt"], report["not_downloaded"]) == (0, 0, 0)


def test_cleanup_queued_during_a_sync_that_reuses_orphan_artifacts_loses_nothing(
        runtime, client, workers, tmp_path, file_server):
    """Pulp's old race: a sync decides to reuse stored orphan artifacts, a cleanup deletes
    them before the sync's version links them. Here the cleanups wait for the sync."""
    files = {f"pool/{i:02d}.bin": f"sync-race-{i}-".encode() * 200 for i in range(12)}
    write_repository(tmp_path / "upstream", files)
    server = file_server(tmp_path / "upstream")
    for i, data in enumerate(files.values()):
        if i % 2 == 0:  # stored already, by nothing referenced, and old: orphans
            store(runtime, data)
        else:  # to download, slowly: the sync is still running when the cleanups come
            server.slow(f"/pool/{i:02d}.bin", 0.3)
    with runtime.db.write() as session:
        session.execute(update(Artifact).values(created_at=utcnow() - timedelta(hours=2)))
    assert client.post("/api/v1/remotes", json={
        "name": "up", "url": server.url + "PULP_MANIFEST",
        "download_concurrency": 2}).status_code == 201
    assert client.post("/api/v1/repositories",
                       json={"name": "mirror", "remote": "up"}).status_code == 201
    sync = client.post("/api/v1/repositories/mirror/sync", json={}).json()
    # Queue the cleanups once the sync has planned (it reports downloads) and before it saves.
    wait_until(lambda: any(stage["stage"] == "downloading"
                           for stage in client.get(sync["href"]).json()["progress"]), 10,
               "the sync did not start downloading")
    cleanups = [client.post(CLEANUP, json={"protection_seconds": 0}).json()
                for _ in range(2)]
    assert wait_for_task(client, sync["href"])["state"] == "completed"
    for cleanup in cleanups:
        assert wait_for_task(client, cleanup["href"])["state"] == "completed"
    with runtime.db.read() as session:
        report = check_artifacts(session, runtime.storage, get_repository(session, "mirror"),
                                 1, lambda *args: None)
    assert report["checked"] == len(files)
    assert (report["missing"], report["corrupt"], report["not_downloaded"]) == (0, 0, 0)


# -- reclaim ---------------------------------------------------------------------------------

def fetchable(runtime, content_id: int) -> None:
    """Give the unit's file a remote artifact: where it can be fetched again."""
    with runtime.db.write() as session:
        remote = session.scalar(select(Remote).where(Remote.name == "upstream"))
        if remote is None:
            remote = Remote(name="upstream", type="file", url="http://127.0.0.1:9/")
            session.add(remote)
            session.flush()
        link = session.scalar(select(ContentArtifact)
                              .where(ContentArtifact.content_id == content_id))
        session.add(RemoteArtifact(content_artifact_id=link.id, remote_id=remote.id,
                                   url=f"http://127.0.0.1:9/{link.relative_path}",
                                   sha256=link.sha256, size=link.size))


def distribute(runtime, name: str, **target) -> None:
    with runtime.db.write() as session:
        session.add(Distribution(name=name, base_path=name, **target))


def version_id(runtime, name: str, number: int) -> int:
    with runtime.db.read() as session:
        return get_version(session, get_repository(session, name), number).id


def test_reclaim_drops_only_bytes_old_versions_hold_and_a_remote_has(runtime, client,
                                                                     workers):
    for name in ("r", "other", "q", "s"):
        repository(runtime, name)
    units = {name: unit(runtime, f"{name}.txt", f"bytes of {name}".encode())
             for name in ("old", "uploaded", "elsewhere", "served", "newest", "q1", "q2",
                          "s1")}
    units["twin"] = unit(runtime, "twin.txt", b"bytes of newest")  # shares newest's artifact
    for name, content_id in units.items():
        if name != "uploaded":
            fetchable(runtime, content_id)
    version(runtime, "r", [units[n] for n in ("old", "uploaded", "elsewhere", "twin")])
    version(runtime, "r", [units["served"]])
    version(runtime, "r", [units["newest"]])
    version(runtime, "other", [units["elsewhere"]])
    version(runtime, "q", [units["q1"]])
    version(runtime, "s", [units["s1"]])
    version(runtime, "s", [])
    version(runtime, "q", [units["q2"]])
    with runtime.db.write() as session:
        q, s = get_repository(session, "q"), get_repository(session, "s")
        publish(session, runtime.plugins, runtime.storage, q, get_version(session, q, 1))
        q2, _ = publish(session, runtime.plugins, runtime.storage, q,
                        get_version(session, q, 2))
        s1, _ = publish(session, runtime.plugins, runtime.storage, s,
                        get_version(session, s, 1))
        q2_id, s1_id = q2.id, s1.id
    # q's newest publication shows version 2, and version 1's superseded one is within its
    # grace period: both still serve.
    version(runtime, "q", [])
    distribute(runtime, "by-version", repository_version_id=version_id(runtime, "r", 2))
    distribute(runtime, "by-repository", repository_id=_repository_id(runtime, "q"))
    distribute(runtime, "by-publication", publication_id=s1_id)
    stored = {name: artifact_of(runtime, content_id) for name, content_id in units.items()}

    task = run(client, client.post(RECLAIM, json={"repositories": ["r", "q", "s", "r"]}))

    locks = {lock["resource"]: lock["exclusive"] for lock in task["locks"]}
    assert locks == {"orphans": True, **{f"repository:{_repository_id(runtime, n)}": False
                                         for n in ("r", "q", "s")}}
    assert task["result"] == {"content_reclaimed": 2, "artifacts_deleted": 1,
                              "bytes_freed": len(b"bytes of old")}
    dropped = {name for name, content_id in units.items()
               if artifact_of(runtime, content_id) is None}
    assert dropped == {"old", "twin"}
    assert not runtime.storage.exists(digest(b"bytes of old"))
    assert not row_exists(runtime, Artifact, stored["old"])
    # The twin's bytes are also the newest unit's: they stay, for that unit.
    assert row_exists(runtime, Artifact, stored["twin"])
    assert runtime.storage.exists(digest(b"bytes of newest"))
    with runtime.db.read() as session:  # the units, links and remote artifacts stay
        link = session.scalar(select(ContentArtifact)
                              .where(ContentArtifact.content_id == units["old"]))
        assert link.size == len(b"bytes of old") and link.sha256 == digest(b"bytes of old")
        assert session.scalar(select(RemoteArtifact.id)
                              .where(RemoteArtifact.content_artifact_id == link.id))
    for name in ("uploaded", "elsewhere", "served", "newest", "q1", "q2", "s1"):
        assert runtime.storage.exists(sha256_of(runtime, stored[name])), name

    # Not keeping the latest drops the newest version's bytes too; served versions and the
    # only copy of uploaded content still keep theirs.
    task = run(client, client.post(RECLAIM, json={"repositories": ["r"],
                                                  "keep_latest": False}))
    assert task["result"]["content_reclaimed"] == 1
    assert artifact_of(runtime, units["newest"]) is None
    assert not runtime.storage.exists(digest(b"bytes of newest"))
    for name in ("uploaded", "served", "elsewhere"):
        assert artifact_of(runtime, units[name]) == stored[name], name

    # Once the grace period is over, the superseded publication's version serves no more.
    age(runtime, Publication, Publication.id == q2_id,
        seconds=runtime.settings.publication_grace_seconds + 1)
    task = run(client, client.post(RECLAIM, json={"repositories": ["q"]}))
    assert task["result"]["content_reclaimed"] == 1
    assert artifact_of(runtime, units["q1"]) is None
    assert artifact_of(runtime, units["q2"]) == stored["q2"]

    # Reclaimed units are still in their versions: cleanup leaves them alone.
    cleanup = run(client, client.post(CLEANUP, json={"protection_seconds": 0}))
    assert cleanup["result"]["content_deleted"] == 0
    assert row_exists(runtime, Content, units["old"])


def _repository_id(runtime, name: str) -> int:
    with runtime.db.read() as session:
        return session.scalar(select(Repository.id).where(Repository.name == name))


def test_reclaim_never_drops_the_only_copy_of_uploaded_content(runtime, client, workers):
    repository(runtime, "r")
    uploaded = [unit(runtime, f"u{i}.txt", f"uploaded {i}".encode()) for i in range(3)]
    version(runtime, "r", uploaded)
    version(runtime, "r", [])
    task = run(client, client.post(RECLAIM, json={"repositories": ["r"],
                                                  "keep_latest": False}))
    assert task["result"] == {"content_reclaimed": 0, "artifacts_deleted": 0,
                              "bytes_freed": 0}
    for content_id in uploaded:
        assert artifact_of(runtime, content_id) is not None
    with runtime.db.read() as session:
        report = check_artifacts(session, runtime.storage, get_repository(session, "r"), 1,
                                 lambda *args: None)
    assert (report["checked"], report["missing"], report["not_downloaded"]) == (3, 0, 0)


# -- the CLI against a real server ------------------------------------------------------------

@pytest.fixture
def served(settings, runtime):
    """A `pallet serve` on this test's database and data directory; the CLI's environment."""
    port = free_port()
    log = open(settings.data_dir / "server.log", "wb")
    process = subprocess.Popen(
        [sys.executable, "-m", "pallet.cli.main", "serve"], stdout=log, stderr=subprocess.STDOUT,
        env=pallet_env(settings, PALLET_PORT=str(port), PALLET_ADMIN_PASSWORD=ADMIN_PASSWORD,
                       PALLET_WORKERS="2"))
    url = f"http://127.0.0.1:{port}"
    try:
        def ready() -> bool:
            assert process.poll() is None, (settings.data_dir / "server.log").read_text()
            try:
                return httpx.get(f"{url}/api/v1/status", timeout=1).status_code == 200
            except httpx.HTTPError:
                return False
        wait_until(ready, SERVER_START_SECONDS, "pallet serve did not answer")
        env = {k: v for k, v in os.environ.items() if not k.startswith("PALLET_")}
        yield dict(env, PALLET_URL=url, PALLET_USERNAME="admin",
                   PALLET_PASSWORD=ADMIN_PASSWORD, XDG_CONFIG_HOME=str(settings.data_dir))
    finally:
        stop(process)
        log.close()


def cli(env, *args: str, expect: int = 0) -> subprocess.CompletedProcess:
    result = subprocess.run([sys.executable, "-m", "pallet.cli.main", *args], env=env,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == expect, (args, result.stdout, result.stderr)
    assert "Traceback" not in result.stderr
    return result


def test_the_cli_cleans_up_and_reclaims(runtime, served):
    repository(runtime, "r")
    synced = unit(runtime, "synced.txt", b"synced bytes, 24 of them")
    fetchable(runtime, synced)
    version(runtime, "r", [synced])
    version(runtime, "r", [])
    store(runtime, b"an orphan of 17 b")
    age(runtime, Artifact, Artifact.id > 0)

    out = cli(served, "orphan", "cleanup", "--protection-time", "3600").stdout
    assert "deleted 0 content units and 1 artifact, freed 17 bytes" in out
    task = json.loads(cli(served, "orphan", "reclaim", "r", "--json").stdout)
    assert task["name"] == "orphans.reclaim" and task["state"] == "completed"
    assert task["result"] == {"content_reclaimed": 1, "artifacts_deleted": 1,
                              "bytes_freed": 24}
    out = cli(served, "orphan", "reclaim", "r").stdout
    assert "dropped the stored bytes of 0 content units" in out and "freed 0 bytes" in out
    queued = json.loads(cli(served, "orphan", "cleanup", "--no-wait", "--json").stdout)
    assert queued["name"] == "orphans.cleanup" and queued["state"] in ("waiting", "running",
                                                                       "completed")
    error = cli(served, "orphan", "reclaim", "nope", expect=1).stderr
    assert "no repository named 'nope'" in error
    cli(served, "orphan", "cleanup", "--protection-time", "-1", expect=2)
