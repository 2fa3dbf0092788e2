"""One Pallet syncs from another Pallet's distribution over HTTP (issue 3, point 8).

Two real `pallet serve` processes on 127.0.0.1, each with its own data directory and
database, driven through the REST API only. The upstream auto-publishes a repository into a
distribution; the downstream's `file` remote points at that distribution's PULP_MANIFEST.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import httpx
import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from tests.conftest import ADMIN_PASSWORD
from tests.processes import SERVER_START_SECONDS, free_port, stop

CONTENT = "/pallet/content"
FILES = {"a.txt": b"alpha\n",
         "dir/b.bin": bytes(range(256)) * 64,
         "dir/with space.txt": b"a path that needs quoting",
         "deep/er/c.txt": b"c" * 1000,
         "large.bin": os.urandom(3 << 20)}  # several read blocks, streamed from disk
ADDED = ("added/new.txt", b"arrived after the first sync")
REMOVED = "a.txt"
TIMEOUT = SERVER_START_SECONDS


@dataclass
class Server:
    """A running `pallet serve`: its base URL, an API client logged in as admin, its log."""
    url: str
    process: subprocess.Popen
    log: Path
    api: httpx.Client | None = None

    def content(self, base_path: str, path: str) -> httpx.Response:
        return httpx.get(f"{self.url}{CONTENT}/{base_path}/{quote(path)}", timeout=TIMEOUT)


def _launch(root: Path, database_url: str) -> Server:
    port = free_port()
    env = dict(os.environ, PALLET_DATA_DIR=str(root / "data"), PALLET_HOST="127.0.0.1",
               PALLET_PORT=str(port), PALLET_ADMIN_PASSWORD=ADMIN_PASSWORD,
               PALLET_DATABASE_URL=database_url, PALLET_WORKERS="2",
               PALLET_TASK_POLL_SECONDS="0.05", PALLET_LOG_LEVEL="warning",
               # A removed file stops being served at once, so the test can see it gone.
               PALLET_PUBLICATION_GRACE_SECONDS="0")
    env.pop("PALLET_CONFIG", None)
    root.mkdir(parents=True, exist_ok=True)
    log = root / "server.log"
    with open(log, "wb") as out:
        process = subprocess.Popen([sys.executable, "-m", "pallet.cli.main", "serve"],
                                   env=env, stdout=out, stderr=subprocess.STDOUT)
    return Server(f"http://127.0.0.1:{port}", process, log)


def _wait_ready(server: Server) -> None:
    deadline = time.monotonic() + TIMEOUT
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise AssertionError(f"pallet serve exited:\n{server.log.read_text()}")
        try:
            if httpx.get(f"{server.url}/api/v1/status", timeout=1).status_code == 200:
                server.api = httpx.Client(base_url=f"{server.url}/api/v1",
                                          auth=("admin", ADMIN_PASSWORD), timeout=TIMEOUT)
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise AssertionError(f"pallet serve did not answer in {TIMEOUT} s:\n"
                         f"{server.log.read_text()}")


@pytest.fixture
def second_database(database_template, tmp_path):
    """The downstream's database, beside the test one: a new SQLite file, or a new
    PostgreSQL database dropped afterwards. `pallet serve` migrates it."""
    kind, where = database_template
    if kind == "sqlite":
        yield f"sqlite:///{tmp_path / 'downstream.db'}"
        return
    name = f"pallet_p2p_{uuid.uuid4().hex[:12]}"
    admin = create_engine(os.environ["PALLET_TEST_DATABASE_URL"], isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield make_url(where).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture
def pallets(tmp_path, database_url, second_database):
    """(upstream, downstream): started together, stopped by their PIDs at the end."""
    servers = [_launch(tmp_path / "upstream", database_url),
               _launch(tmp_path / "downstream", second_database)]
    try:
        for server in servers:
            _wait_ready(server)
        yield tuple(servers)
    finally:
        for server in servers:
            if server.api is not None:
                server.api.close()
            stop(server.process)


# -- REST helpers ---------------------------------------------------------------------------

def _ok(response: httpx.Response, *statuses: int) -> dict:
    assert response.status_code in (statuses or (200,)), response.text
    return response.json()


def _run(api: httpx.Client, response: httpx.Response) -> dict:
    """Wait for the task a 202 answer names; it must complete."""
    href = _ok(response, 202)["href"]
    deadline = time.monotonic() + TIMEOUT
    while time.monotonic() < deadline:
        task = api.get(href.removeprefix("/api/v1")).json()
        if task["state"] in ("completed", "failed", "canceled"):
            assert task["state"] == "completed", task
            return task
        time.sleep(0.05)
    raise AssertionError(f"task {href} did not finish in {TIMEOUT} s")


def _add_file(api: httpx.Client, path: str, data: bytes) -> int:
    """Upload in one chunk, commit, and make a `file` unit; its id."""
    sha256 = hashlib.sha256(data).hexdigest()
    upload = _ok(api.post("/uploads", json={"size": len(data)}), 201)
    _ok(api.put(f"/uploads/{upload['id']}", content=data,
                headers={"Content-Range": f"bytes 0-{len(data) - 1}/{len(data)}"}))
    _run(api, api.post(f"/uploads/{upload['id']}/commit", json={"sha256": sha256}))
    unit = _ok(api.post("/content/file", json={"relative_path": path, "sha256": sha256}),
               200, 201)
    return unit["id"]


def _latest(api: httpx.Client, repository: str) -> dict:
    number = _ok(api.get(f"/repositories/{repository}"))["latest_version"]
    return _ok(api.get(f"/repositories/{repository}/versions/{number}"))


def _serve(api: httpx.Client, repository: str, base_path: str, **fields) -> None:
    """A repository that auto-publishes, and a distribution serving its newest publication."""
    _ok(api.post("/repositories", json={"name": repository, "autopublish": True,
                                        "publish_options": {}, **fields}), 201)
    _ok(api.post("/distributions", json={"name": repository, "base_path": base_path,
                                         "repository": repository}), 201)


def _publish_upstream(upstream: Server) -> dict[str, int]:
    """The upstream's repository `source`, served at `up/files`; unit ids by path."""
    _serve(upstream.api, "source", "up/files")
    ids = {path: _add_file(upstream.api, path, data) for path, data in FILES.items()}
    _run(upstream.api, upstream.api.post("/repositories/source/modify",
                                         json={"add_content": list(ids.values())}))
    return ids


def _manifest(server: Server, base_path: str) -> list[bytes]:
    response = server.content(base_path, "PULP_MANIFEST")
    assert response.status_code == 200, response.text
    return sorted(response.content.splitlines())


def _sync(api: httpx.Client, repository: str, **body) -> dict:
    return _run(api, api.post(f"/repositories/{repository}/sync", json=body))["result"]


def _artifact_count(api: httpx.Client, data: bytes) -> int:
    sha256 = hashlib.sha256(data).hexdigest()
    return _ok(api.get("/artifacts", params={"sha256": sha256}))["count"]


# -- the tests ------------------------------------------------------------------------------

def test_a_pallet_mirrors_another_pallets_distribution(pallets):
    upstream, downstream = pallets
    ids = _publish_upstream(upstream)
    source = _latest(upstream.api, "source")
    assert source["number"] == 1 and source["counts"]["file"]["present"] == len(FILES)

    manifest_url = f"{upstream.url}{CONTENT}/up/files/PULP_MANIFEST"
    _ok(downstream.api.post("/remotes", json={"name": "peer", "url": manifest_url,
                                              "policy": "immediate"}), 201)
    _serve(downstream.api, "mirror", "down/files", remote="peer")

    first = _sync(downstream.api, "mirror")
    assert (first["version"], first["downloaded"]) == (1, len(FILES)), first
    mirror = _latest(downstream.api, "mirror")
    assert mirror["digest"] == source["digest"] == first["digest"]
    assert mirror["counts"]["file"]["present"] == len(FILES)
    for path, data in FILES.items():
        served = downstream.content("down/files", path)
        assert served.status_code == 200 and served.content == data, path
    assert _manifest(downstream, "down/files") == _manifest(upstream, "up/files")

    # One file more and one less upstream: a mirror sync follows both ways.
    added = _add_file(upstream.api, *ADDED)
    _run(upstream.api, upstream.api.post("/repositories/source/modify", json={
        "add_content": [added], "remove_content": [ids[REMOVED]]}))
    changed = _latest(upstream.api, "source")
    assert changed["number"] == 2 and changed["digest"] != source["digest"]
    second = _sync(downstream.api, "mirror", mirror=True)
    assert (second["version"], second["downloaded"], second["mirror"]) == (2, 1, True), second
    assert _latest(downstream.api, "mirror")["digest"] == changed["digest"]
    assert downstream.content("down/files", ADDED[0]).content == ADDED[1]
    assert downstream.content("down/files", REMOVED).status_code == 404
    assert _manifest(downstream, "down/files") == _manifest(upstream, "up/files")

    # Nothing changed upstream: no version, no publication.
    publications = _ok(downstream.api.get("/publications"))["count"]
    third = _sync(downstream.api, "mirror", mirror=True)
    assert third["version"] is None and third["downloaded"] == 0, third
    assert _latest(downstream.api, "mirror")["number"] == 2
    assert _ok(downstream.api.get("/publications"))["count"] == publications

    # Immediate means stored: the downstream serves everything with the upstream gone.
    stop(upstream.process)
    for path in set(FILES) - {REMOVED}:
        assert downstream.content("down/files", path).content == FILES[path], path


def test_on_demand_fetches_from_the_upstream_pallet_at_first_request(pallets):
    upstream, downstream = pallets
    _publish_upstream(upstream)
    source = _latest(upstream.api, "source")

    manifest_url = f"{upstream.url}{CONTENT}/up/files/PULP_MANIFEST"
    # No retries: the request made after the upstream stops fails at once.
    _ok(downstream.api.post("/remotes", json={"name": "lazy", "url": manifest_url,
                                              "policy": "on_demand", "max_retries": 0}), 201)
    _serve(downstream.api, "lazy", "lazy/files", remote="lazy")
    result = _sync(downstream.api, "lazy")
    assert (result["version"], result["downloaded"]) == (1, 0), result
    assert _latest(downstream.api, "lazy")["digest"] == source["digest"]

    wanted = ("large.bin", "dir/with space.txt")
    for path in wanted:
        assert _artifact_count(downstream.api, FILES[path]) == 0, path
        served = downstream.content("lazy/files", path)
        assert served.status_code == 200 and served.content == FILES[path], path
        # Recorded before the last byte goes out: a client that has the whole file finds it.
        assert _artifact_count(downstream.api, FILES[path]) == 1, path
    assert _artifact_count(downstream.api, FILES["a.txt"]) == 0  # never asked for

    # Stored at the first request: served again with the upstream gone; the rest is not.
    stop(upstream.process)
    for path in wanted:
        assert downstream.content("lazy/files", path).content == FILES[path], path
    assert downstream.content("lazy/files", "a.txt").status_code == 502
