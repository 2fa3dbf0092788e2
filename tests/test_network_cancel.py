"""Outgoing connections against a peer that accepts and never answers: every one has connect
and read timeouts, and a cancel reaches a task blocked on the network within seconds, ends it
`canceled`, and frees its worker for the tasks queued behind it."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import threading
import time

import httpx
import pytest

from factories import make_files
from pallet.errors import PalletError
from pallet.tasks import service
from pallet.tasks.registry import task_function
from tests.conftest import ADMIN_PASSWORD, export_settings, wait_for_task
from tests.peers import Silent
from tests.test_clients import uvicorn_serving

CANCEL_SECONDS = 5


@pytest.fixture
def settings(tmp_path, database_url):
    return export_settings(tmp_path, database_url)


@pytest.fixture
def silent():
    server = Silent()
    yield server
    server.close()


def create(client, path: str, body: dict) -> dict:
    response = client.post(f"/api/v1/{path}", json=body)
    assert response.status_code == 201, response.text
    return response.json()


def upstream(client, name: str, url: str, **options) -> dict:
    return create(client, "upstreams", {"name": name, "base_url": url,
                                        "repositories": ["web"], **options})


def cancel_within(client, task: dict, seconds: float = CANCEL_SECONDS) -> dict:
    started = time.monotonic()
    assert client.post(f"{task['href']}/cancel").status_code == 200
    final = wait_for_task(client, task["href"], timeout=seconds)
    assert time.monotonic() - started < seconds
    return final


def commit_upload(client, data: bytes) -> dict:
    """Queue an upload's commit: a task unrelated to any replication."""
    href = client.post("/api/v1/uploads", json={"size": len(data)}).json()["href"]
    client.put(href, content=data, headers={"Content-Type": "application/octet-stream",
                                            "Content-Range": f"bytes 0-{len(data) - 1}/"
                                                             f"{len(data)}"})
    answer = client.post(f"{href}/commit", json={"sha256": hashlib.sha256(data).hexdigest()})
    assert answer.status_code == 202, answer.text
    return answer.json()


# -- cancel reaches the network ---------------------------------------------------------------

def test_cancel_reaches_a_sync_waiting_on_a_silent_remote(client, workers, silent):
    create(client, "remotes", {"name": "silent", "url": silent.url + "/"})  # default timeouts
    create(client, "repositories", {"name": "repo"})
    task = client.post("/api/v1/repositories/repo/sync", json={"remote": "silent"}).json()
    silent.wait_for(1)
    final = cancel_within(client, task)
    assert final["state"] == "canceled", final["error"]


def test_cancel_reaches_a_replication_waiting_on_a_silent_upstream(client, workers, silent):
    upstream(client, "up", silent.url)  # default timeouts
    task = client.post("/api/v1/upstreams/up/replicate").json()
    silent.wait_for(1)
    final = cancel_within(client, task)
    assert final["state"] == "canceled", final["error"]
    assert final["error"] is None


def test_cancel_reaches_a_push_waiting_on_a_silent_downstream(client, workers, silent):
    create(client, "repositories", {"name": "web"})
    create(client, "downstreams", {"name": "down", "base_url": silent.url,
                                   "importer": "in", "repositories": ["web"]})
    task = client.post("/api/v1/downstreams/down/push").json()
    silent.wait_for(1)
    final = cancel_within(client, task)
    assert final["state"] == "canceled", final["error"]


def test_blocked_replications_free_the_workers_once_canceled(client, workers, silent):
    tasks = []
    for name in ("one", "two"):  # two upstreams: no lock keeps them from running together
        upstream(client, name, silent.url)
        tasks.append(client.post(f"/api/v1/upstreams/{name}/replicate").json())
    silent.wait_for(2)
    commit = commit_upload(client, b"unrelated\n")
    time.sleep(1)
    assert client.get(commit["href"]).json()["state"] == "waiting"  # both workers are held
    for task in tasks:
        assert client.post(f"{task['href']}/cancel").status_code == 200
    canceled_at = time.monotonic()
    assert wait_for_task(client, commit["href"], timeout=CANCEL_SECONDS)["state"] == "completed"
    # The commit needs one free worker; the other replication may still be ending.
    assert [wait_for_task(client, t["href"], timeout=CANCEL_SECONDS)["state"]
            for t in tasks] == ["canceled", "canceled"]
    assert time.monotonic() - canceled_at < CANCEL_SECONDS


# -- timeouts -----------------------------------------------------------------------------------

def test_a_silent_upstream_times_out_and_frees_its_worker(client, workers, silent):
    upstream(client, "up", silent.url, read_timeout=1)
    started = time.monotonic()
    task = client.post("/api/v1/upstreams/up/replicate").json()
    final = wait_for_task(client, task["href"], timeout=10)
    assert time.monotonic() - started < 5
    assert final["state"] == "failed" and final["error"]["code"] == "peer_timeout"
    assert "read_timeout" in final["error"]["message"]
    assert wait_for_task(client, commit_upload(client, b"next\n")["href"],
                         timeout=10)["state"] == "completed"


def test_a_silent_downstream_times_out(client, workers, silent):
    create(client, "repositories", {"name": "web"})
    create(client, "downstreams", {"name": "down", "base_url": silent.url, "importer": "in",
                                   "repositories": ["web"], "read_timeout": 1})
    final = wait_for_task(client, client.post("/api/v1/downstreams/down/push").json()["href"],
                          timeout=10)
    assert final["state"] == "failed" and final["error"]["code"] == "peer_timeout"


def test_peer_timeouts_are_options_with_defaults_and_bounds(client):
    made = upstream(client, "up", "http://127.0.0.1:9")
    assert (made["connect_timeout"], made["read_timeout"]) == (15, 120)
    changed = client.patch("/api/v1/upstreams/up", json={"connect_timeout": 2.5,
                                                         "read_timeout": 30})
    assert changed.status_code == 200, changed.text
    assert (changed.json()["connect_timeout"], changed.json()["read_timeout"]) == (2.5, 30)
    for bad in ({"read_timeout": 0}, {"connect_timeout": -1}, {"read_timeout": 10**6},
                {"read_timeout": None}):
        refused = client.patch("/api/v1/upstreams/up", json=bad)
        assert refused.status_code == 400, (bad, refused.text)
        assert refused.json()["error"]["code"] == "invalid"
    assert client.get("/api/v1/upstreams/up").json()["read_timeout"] == 30
    made = create(client, "downstreams", {"name": "down", "base_url": "http://127.0.0.1:9",
                                          "importer": "in", "repositories": ["web"],
                                          "connect_timeout": 3})
    assert (made["connect_timeout"], made["read_timeout"]) == (3, 120)


# -- the task runner --------------------------------------------------------------------------

WAITING_FOR_CANCEL = threading.Event()


@task_function("test.fails_once_canceled")
def fails_once_canceled(runtime, task) -> None:
    """What a task blocked on a socket does when the cancel closes it: it fails."""
    WAITING_FOR_CANCEL.set()
    assert task.canceled.wait(10)
    raise PalletError("the connection broke", code="peer_broken")


def test_a_canceled_task_ends_canceled_whatever_it_raised(runtime, client, workers):
    WAITING_FOR_CANCEL.clear()
    with runtime.db.write() as session:
        task_id = service.enqueue(session, "test.fails_once_canceled").id
    runtime.wakeup.set()
    assert WAITING_FOR_CANCEL.wait(10)
    href = f"/api/v1/tasks/{task_id}"
    final = cancel_within(client, {"href": href})
    assert final["state"] == "canceled" and final["error"] is None


def test_a_streamed_import_into_a_silent_server_times_out(silent):
    env = dict(os.environ, PALLET_URL=silent.url, PALLET_USERNAME="admin",
               PALLET_PASSWORD="unused")
    env.pop("PALLET_CONFIG", None)
    started = time.monotonic()
    run = subprocess.run([sys.executable, "-m", "pallet.cli.main", "importer", "run", "in", "-",
                          "--read-timeout", "1"], input=b"x" * 1000, env=env,
                         capture_output=True, timeout=60)
    assert run.returncode == 1, run.stderr
    assert b"did not answer in time" in run.stderr and b"Traceback" not in run.stderr
    assert time.monotonic() - started < 20  # the CLI's start-up, and one second of silence


def test_cancel_reaches_a_streamed_import_whose_sender_stalls(client, runtime, workers,
                                                              tmp_path):
    ids = make_files(runtime, 8)
    create(client, "repositories", {"name": "web"})
    modify = client.post("/api/v1/repositories/web/modify", json={"add_content": ids}).json()
    assert wait_for_task(client, modify["href"])["state"] == "completed"
    create(client, "exporters", {"name": "ex", "path": str(tmp_path / "exports"),
                                 "repositories": ["web"]})
    data = client.get("/api/v1/exporters/ex/stream").content
    create(client, "importers", {"name": "im", "mapping": {"web": "copy"},
                                 "create_repositories": True})
    release = threading.Event()

    def stalling():
        yield data[: len(data) // 2]
        release.wait(30)  # the sender goes quiet, the connection stays open

    with uvicorn_serving(runtime) as url:
        sender = threading.Thread(target=lambda: httpx.post(
            f"{url}/api/v1/importers/im/import-stream", content=stalling(), timeout=60,
            headers={"Content-Type": "application/x-tar"}, auth=("admin", ADMIN_PASSWORD)))
        sender.start()
        try:
            deadline = time.monotonic() + 10
            while not (running := client.get("/api/v1/tasks", params={
                    "name": "transfer.import", "state": "running"}).json()["results"]):
                assert time.monotonic() < deadline, "the streamed import never started"
                time.sleep(0.05)
            final = cancel_within(client, running[0])
            assert final["state"] == "canceled", final["error"]
            assert client.get("/api/v1/repositories/copy").status_code == 404
        finally:
            release.set()
            sender.join(30)
