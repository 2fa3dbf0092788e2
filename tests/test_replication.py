"""Connected inter-server sync between two real servers (two `pallet serve` processes, two
data directories, two databases, two ports on 127.0.0.1): pull, push, schedules, and the
failures a network brings: an upstream killed mid-stream, wrong credentials, a certificate
nobody vouches for. A small TCP relay in the test stands between the two where a test needs
to cut or encrypt the connection."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time

import httpx
import pytest

from tests.http_fixtures import make_tls
from tests.servers import Servers
from tests.test_cli import PASSWORD
from tests.test_transfer_cli import pallet

TIMEOUT = 60


class Relay:
    """Forwards 127.0.0.1:port to a target port, optionally as a TLS server; calls
    `on_bytes(total)` as the target's answer passes through."""

    def __init__(self, target_port: int, *, tls: ssl.SSLContext | None = None,
                 on_bytes=None) -> None:
        self.target_port, self.tls, self.on_bytes = target_port, tls, on_bytes
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.passed = 0
        self._closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(client,), daemon=True).start()

    def _serve(self, client: socket.socket) -> None:
        try:
            if self.tls is not None:
                client = self.tls.wrap_socket(client, server_side=True)
            target = socket.create_connection(("127.0.0.1", self.target_port), timeout=30)
        except OSError:
            client.close()
            return
        threading.Thread(target=self._pipe, args=(client, target, False), daemon=True).start()
        self._pipe(target, client, True)

    def _pipe(self, source: socket.socket, sink: socket.socket, answer: bool) -> None:
        try:
            while block := source.recv(65536):
                sink.sendall(block)
                if answer:
                    self.passed += len(block)
                    if self.on_bytes:
                        self.on_bytes(self.passed)
        except OSError:
            pass
        finally:
            for end in (source, sink):
                try:
                    end.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                end.close()

    def close(self) -> None:
        self._closed = True
        self.listener.close()


@pytest.fixture
def running(tmp_path):
    servers = Servers(tmp_path)
    try:
        yield servers
    finally:
        servers.close()


def api(server) -> httpx.Client:
    return httpx.Client(base_url=f"{server.url}/api/v1", auth=("admin", PASSWORD),
                        timeout=TIMEOUT)


def wait(client: httpx.Client, answer: httpx.Response) -> dict:
    assert answer.status_code == 202, answer.text
    href = answer.json()["href"].removeprefix("/api/v1")
    deadline = time.monotonic() + TIMEOUT
    while time.monotonic() < deadline:
        task = client.get(href).json()
        if task["state"] in ("completed", "failed", "canceled"):
            return task
        time.sleep(0.1)
    raise AssertionError(f"task {href} did not finish: {task}")


def replicate(client: httpx.Client, upstream: str = "up") -> dict:
    return wait(client, client.post(f"/upstreams/{upstream}/replicate"))


def latest(client: httpx.Client, repository: str) -> dict:
    shown = client.get(f"/repositories/{repository}")
    assert shown.status_code == 200, shown.text
    number = shown.json()["latest_version"]
    return client.get(f"/repositories/{repository}/versions/{number}").json()


def add_files(client: httpx.Client, repository: str, files: dict[str, bytes]) -> None:
    """Upload `files` (relative path: bytes) through the API; one new version holds them."""
    units = []
    for name, data in files.items():
        made = client.post("/uploads", json={"size": len(data)}).json()
        href = made["href"].removeprefix("/api/v1")
        if data:
            client.put(href, content=data, headers={
                "Content-Type": "application/octet-stream",
                "Content-Range": f"bytes 0-{len(data) - 1}/{len(data)}"}).raise_for_status()
        sha256 = hashlib.sha256(data).hexdigest()
        task = wait(client, client.post(f"{href}/commit", json={"sha256": sha256}))
        assert task["state"] == "completed", task["error"]
        unit = client.post("/content/file", json={"relative_path": name, "sha256": sha256})
        assert unit.status_code in (200, 201), unit.text
        units.append(unit.json()["id"])
    task = wait(client, client.post(f"/repositories/{repository}/modify",
                                    json={"add_content": units}))
    assert task["state"] == "completed", task["error"]


def content_ids(client: httpx.Client, repository: str) -> dict[str, int]:
    page = client.get("/content", params={"repository": repository, "limit": 1000}).json()
    return {unit["fields"]["relative_path"]: unit["id"] for unit in page["results"]}


def test_pull_full_then_incremental_then_nothing(running, tmp_path):
    up, down = running.start("upstream"), running.start("downstream")
    with api(up) as upstream, api(down) as downstream:
        for name in ("web", "web-extra", "private"):
            assert upstream.post("/repositories", json={
                "name": name, "autopublish": True, "publish_options": {}}).status_code == 201
        add_files(upstream, "web", {f"page-{i}.html": f"page {i}\n".encode() * 500
                                    for i in range(3)})
        add_files(upstream, "web-extra", {"extra.bin": os.urandom(100_000)})
        add_files(upstream, "private", {"secret.txt": b"not selected\n"})
        assert upstream.post("/distributions", json={"name": "web", "base_path": "site/web",
                                                     "repository": "web"}).status_code == 201
        made = downstream.post("/upstreams", json={
            "name": "up", "base_url": up.url, "username": "admin", "password": PASSWORD,
            "repositories": ["web*"], "base_path_prefix": "mirror"})
        assert made.status_code == 201, made.text
        assert PASSWORD not in made.text and made.json()["has_password"]

        # A local repository of a selected name is never taken over: nothing changes.
        assert downstream.post("/repositories", json={"name": "web-extra"}).status_code == 201
        task = replicate(downstream)
        assert task["state"] == "failed"
        assert "is not a replica of upstream 'up'" in task["error"]["message"]
        assert downstream.get("/repositories/web").status_code == 404
        wait(downstream, downstream.delete("/repositories/web-extra"))

        task = replicate(downstream)
        assert PASSWORD not in str(task)
        assert task["state"] == "completed", task["error"]
        states = {r["name"]: r["state"] for r in task["result"]["repositories"]}
        assert states == {"web": "created", "web-extra": "created"}
        for name in ("web", "web-extra"):
            assert latest(downstream, name)["digest"] == latest(upstream, name)["digest"]
        assert downstream.get("/repositories/private").status_code == 404
        served = httpx.get(f"{down.url}/pallet/content/mirror/site/web/page-1.html")
        assert served.status_code == 200 and served.content == b"page 1\n" * 500
        full_bytes = task["result"]["bytes_received"]

        # Adds and removes upstream: only the change travels.
        add_files(upstream, "web", {"page-new.html": b"new page\n"})
        removed = content_ids(upstream, "web")["page-0.html"]
        wait(upstream, upstream.post("/repositories/web/modify",
                                     json={"remove_content": [removed]}))
        task = replicate(downstream)
        assert task["state"] == "completed", task["error"]
        states = {r["name"]: r["state"] for r in task["result"]["repositories"]}
        assert states == {"web": "updated", "web-extra": "up to date"}
        assert latest(downstream, "web")["digest"] == latest(upstream, "web")["digest"]
        assert 0 < task["result"]["bytes_received"] < full_bytes
        manifest = httpx.get(f"{down.url}/pallet/content/mirror/site/web/PULP_MANIFEST").text
        assert "page-new.html" in manifest and "page-0.html" not in manifest
        assert httpx.get(f"{down.url}/pallet/content/mirror/site/web/page-new.html"
                         ).content == b"new page\n"

        # Nothing changed: nothing travels, nothing is created.
        versions = downstream.get("/repositories/web/versions").json()["count"]
        task = replicate(downstream)
        assert task["state"] == "completed", task["error"]
        assert task["result"]["bytes_received"] == 0 and task["result"]["import"] is None
        assert {r["state"] for r in task["result"]["repositories"]} == {"up to date"}
        assert downstream.get("/repositories/web/versions").json()["count"] == versions
        replicas = downstream.get("/upstreams/up").json()["replicas"]
        assert [(r["source"], r["repository"]) for r in replicas] == [
            ("web", "web"), ("web-extra", "web-extra")]

        # A distribution moved upstream follows, with no new version.
        assert upstream.patch("/distributions/web", json={"base_path": "site/www"}).is_success
        task = replicate(downstream)
        states = {r["name"]: r["state"] for r in task["result"]["repositories"]}
        assert states == {"web": "distributions updated", "web-extra": "up to date"}, task
        assert downstream.get("/repositories/web/versions").json()["count"] == versions
        assert httpx.get(f"{down.url}/pallet/content/mirror/site/www/page-1.html"
                         ).content == b"page 1\n" * 500
        assert replicate(downstream)["result"]["bytes_received"] == 0

        # No longer selected is not removed upstream: reported, never deleted.
        assert downstream.patch("/upstreams/up", json={"repositories": ["web"],
                                                       "remove_missing": True}).is_success
        task = replicate(downstream)
        assert task["result"]["no_longer_selected"] == ["web-extra"]
        assert task["result"]["missing_upstream"] == task["result"]["removed"] == []
        assert downstream.get("/repositories/web-extra").status_code == 200

        # A selected repository removed upstream: reported, kept until asked.
        assert downstream.patch("/upstreams/up", json={"repositories": ["web*"],
                                                       "remove_missing": False}).is_success
        wait(upstream, upstream.delete("/repositories/web-extra"))
        task = replicate(downstream)
        assert task["state"] == "completed", task["error"]
        assert task["result"]["missing_upstream"] == ["web-extra"]
        assert task["result"]["removed"] == []
        assert downstream.get("/repositories/web-extra").status_code == 200
        assert downstream.patch("/upstreams/up", json={"remove_missing": True}).is_success
        task = replicate(downstream)
        assert task["result"]["removed"] == ["web-extra"]
        assert downstream.get("/repositories/web-extra").status_code == 404


def test_upstream_killed_mid_transfer_changes_nothing_and_a_retry_completes(running,
                                                                            tmp_path):
    """Two replicated repositories, both changed upstream; the upstream dies in the middle
    of the stream: neither changes, both keep serving their old content; a retry after the
    upstream is back completes, reusing what the broken transfer stored."""
    up, down = running.start("upstream"), running.start("downstream")
    with api(up) as upstream, api(down) as downstream:
        for name in ("big", "small"):
            upstream.post("/repositories", json={"name": name, "autopublish": True,
                                                 "publish_options": {}})
            upstream.post("/distributions", json={"name": name, "base_path": name,
                                                  "repository": name})
            add_files(upstream, name, {f"{name}-first.txt": b"first\n"})
        killed = threading.Event()
        armed = threading.Event()

        def kill_midway(passed: int) -> None:
            if armed.is_set() and passed > 3 << 20 and not killed.is_set():
                killed.set()
                os.kill(up.process.pid, signal.SIGKILL)

        relay = Relay(up.port, on_bytes=kill_midway)
        try:
            assert downstream.post("/upstreams", json={
                "name": "up", "base_url": f"http://127.0.0.1:{relay.port}",
                "username": "admin", "password": PASSWORD,
                "repositories": ["big", "small"]}).status_code == 201
            assert replicate(downstream)["state"] == "completed"
            before = {name: latest(downstream, name)["digest"] for name in ("big", "small")}
            add_files(upstream, "small", {"small-second.txt": b"second\n"})
            add_files(upstream, "big", {f"blob-{i}.bin": os.urandom(1 << 20)
                                        for i in range(6)})

            relay.passed = 0
            armed.set()
            task = replicate(downstream)
            assert killed.is_set(), task["error"]
            assert task["state"] == "failed"
            assert "nothing was replicated" in task["error"]["message"], task["error"]
            assert {name: latest(downstream, name)["digest"]
                    for name in ("big", "small")} == before
            manifest = httpx.get(f"{down.url}/pallet/content/small/PULP_MANIFEST").text
            assert "small-first.txt" in manifest and "small-second.txt" not in manifest

            armed.clear()
            up.process.wait(10)
            restarted = running.restart(up)
            task = replicate(downstream)
            assert task["state"] == "completed", task["error"]
            with api(restarted) as again:
                for name in ("big", "small"):
                    assert latest(downstream, name)["digest"] == latest(again, name)["digest"]
            # What the broken transfer stored was kept and reused.
            assert task["result"]["bytes_written"] < 6 << 20
            manifest = httpx.get(f"{down.url}/pallet/content/small/PULP_MANIFEST").text
            assert "small-second.txt" in manifest
        finally:
            relay.close()


def test_wrong_credentials_and_untrusted_certificate(running, tmp_path):
    up, down = running.start("upstream"), running.start("downstream")
    tls = make_tls(tmp_path / "tls")
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(tls.directory / "server.pem", tls.directory / "server.key")
    relay = Relay(up.port, tls=context)
    try:
        with api(up) as upstream, api(down) as downstream:
            upstream.post("/repositories", json={"name": "web"})
            add_files(upstream, "web", {"index.html": b"hello\n"})
            downstream.post("/upstreams", json={
                "name": "up", "base_url": up.url, "username": "admin",
                "password": "not-the-password", "repositories": ["web"]})
            task = replicate(downstream)
            assert task["state"] == "failed"
            assert "refused the credentials" in task["error"]["message"]

            https = f"https://127.0.0.1:{relay.port}"
            moved = downstream.patch("/upstreams/up", json={"base_url": https})
            assert moved.status_code == 400 and "credentials again" in moved.text
            assert downstream.patch("/upstreams/up", json={"password": PASSWORD,
                                                           "base_url": https}).is_success
            task = replicate(downstream)
            assert task["state"] == "failed"
            assert "is not trusted" in task["error"]["message"], task["error"]
            assert downstream.get("/repositories/web").status_code == 404

            assert downstream.patch("/upstreams/up", json={"ca_cert": tls.ca_cert}).is_success
            task = replicate(downstream)
            assert task["state"] == "completed", task["error"]
            assert latest(downstream, "web")["digest"] == latest(upstream, "web")["digest"]
    finally:
        relay.close()


def test_push_into_the_downstream_importer(running, tmp_path):
    up, down = running.start("upstream"), running.start("downstream")
    with api(up) as upstream, api(down) as downstream:
        upstream.post("/repositories", json={"name": "web", "autopublish": True,
                                             "publish_options": {}})
        add_files(upstream, "web", {"index.html": b"pushed\n"})
        upstream.post("/distributions", json={"name": "web", "base_path": "web",
                                              "repository": "web"})
        downstream.post("/importers", json={"name": "from-up", "create_repositories": True,
                                            "mapping": {"web": "web-copy"}})
        made = upstream.post("/downstreams", json={
            "name": "down", "base_url": down.url, "username": "admin", "password": PASSWORD,
            "importer": "from-up", "repositories": ["web"]})
        assert made.status_code == 201, made.text
        task = wait(upstream, upstream.post("/downstreams/down/push"))
        assert task["state"] == "completed", task["error"]
        assert latest(downstream, "web-copy")["digest"] == latest(upstream, "web")["digest"]
        assert httpx.get(f"{down.url}/pallet/content/web/index.html").content == b"pushed\n"

        add_files(upstream, "web", {"more.html": b"more\n"})
        task = wait(upstream, upstream.post("/downstreams/down/push"))
        assert task["state"] == "completed", task["error"]
        assert [r["state"] for r in task["result"]["repositories"]] == ["updated"]
        assert latest(downstream, "web-copy")["digest"] == latest(upstream, "web")["digest"]
        task = wait(upstream, upstream.post("/downstreams/down/push"))
        assert [r["state"] for r in task["result"]["repositories"]] == ["up to date"]
        assert task["result"]["import_task"] is None


def test_a_scheduled_replication_runs_by_itself(running, tmp_path):
    up, down = running.start("upstream"), running.start("downstream")
    with api(up) as upstream, api(down) as downstream:
        upstream.post("/repositories", json={"name": "web"})
        add_files(upstream, "web", {"index.html": b"scheduled\n"})
        downstream.post("/upstreams", json={
            "name": "up", "base_url": up.url, "username": "admin", "password": PASSWORD,
            "repositories": ["web"], "every_seconds": 5})
        deadline = time.monotonic() + 30
        while downstream.get("/repositories/web").status_code != 200:
            assert time.monotonic() < deadline, "the schedule never replicated"
            time.sleep(0.2)
        tasks = downstream.get("/tasks", params={"name": "replication.pull"}).json()
        assert tasks["results"][0]["created_by"] == "schedule upstream:1"
        assert tasks["results"][0]["group"] is not None  # a replication is a group
        assert latest(downstream, "web")["digest"] == latest(upstream, "web")["digest"]


def test_the_cli_registers_an_upstream_and_replicates(running, tmp_path):
    up, down = running.start("upstream"), running.start("downstream")
    pallet(up.url, "repository", "create", "web")
    with api(up) as upstream:
        add_files(upstream, "web", {"index.html": b"from the cli\n"})
    env = dict(os.environ, PALLET_URL=down.url, PALLET_USERNAME="admin",
               PALLET_PASSWORD=PASSWORD)
    made = subprocess.run([sys.executable, "-m", "pallet.cli.main", "upstream", "create", "up",
                           "--url", up.url, "--username", "admin", "--password-stdin",
                           "--repository", "web", "--base-path-prefix", "mirror",
                           "--read-timeout", "30"],
                          input=PASSWORD + "\n", env=env, capture_output=True, text=True,
                          timeout=60)
    assert made.returncode == 0, made.stderr
    assert PASSWORD not in made.stdout
    run = pallet(down.url, "upstream", "replicate", "up")
    assert "web: created (upstream version 1)" in run.stdout, run.stdout
    shown = pallet(down.url, "upstream", "show", "up").stdout
    assert "web (upstream version 1)" in shown and "read_timeout: 30" in shown, shown
    listed = json.loads(pallet(down.url, "task", "list", "--name", "replication.pull",
                               "--json").stdout)
    task = pallet(down.url, "task", "show", str(listed["results"][0]["id"])).stdout
    assert "asking the upstream 1/1" in task and "None" not in task, task
    assert "web: created (upstream version 1)" in task and '{"' not in task, task
    again = pallet(down.url, "upstream", "replicate", "up")
    assert "web: up to date" in again.stdout and "received 0" in again.stdout
    wrong = pallet(down.url, "upstream", "update", "up", "--password", "wrong-password")
    assert wrong.returncode == 0
    failed = pallet(down.url, "upstream", "replicate", "up", check=False)
    assert failed.returncode == 1 and "refused the credentials" in failed.stderr
    assert "Traceback" not in failed.stderr
    pallet(down.url, "upstream", "update", "up", "--password", PASSWORD,
           "--repository", "nothing-*")
    nothing = pallet(down.url, "upstream", "replicate", "up", check=False)
    assert nothing.returncode == 1, nothing.stdout
    assert "no repository that the selection names (repositories: nothing-*)" in \
        nothing.stderr, nothing.stderr
