"""Real clients against a real server: curl and wget download through the content app
served by uvicorn on 127.0.0.1, and `pallet content-app` runs as its own process."""

from __future__ import annotations

import hashlib
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
from contextlib import contextmanager
from email.utils import formatdate
from urllib.parse import quote

import httpx
import pytest
import uvicorn
from sqlalchemy import select

from pallet.api.app import create_server_app
from pallet.artifacts.models import Artifact
from pallet.content.models import ContentArtifact
from pallet.distributions.models import Distribution
from pallet.remotes.models import RemoteArtifact
from tests.http_fixtures import FileServer
from tests.processes import free_port, pallet_env, stop, wait_until
from tests.test_contentapp import make_runtime, manifest_of, published, remote_only_file  # noqa: F401

C = "/pallet/content"
LARGE = hashlib.sha256(b"large").digest() * (2**21 // 32 + 3)  # 2 MiB and a bit: streamed
FILES = {"a.txt": b"alpha\n", "dir/b.bin": bytes(range(256)) * 300,
         "dir/with space.txt": b"spaced", "dir/sub/c.txt": b"c", "large/blob.bin": LARGE}
TIMEOUT = 60


def need(tool: str) -> str:
    path = shutil.which(tool)
    if path is None:
        pytest.skip(f"{tool} is not installed")
    return path


@contextmanager
def uvicorn_serving(runtime):
    """The embedded server's ASGI app under uvicorn in a thread; its base URL."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    config = uvicorn.Config(create_server_app(runtime), log_level="warning", access_log=False)
    instance = uvicorn.Server(config)
    thread = threading.Thread(target=instance.run, kwargs={"sockets": [listener]}, daemon=True)
    thread.start()
    wait_until(lambda: instance.started, 10, "uvicorn did not start")
    try:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}"
    finally:
        instance.should_exit = True
        thread.join(10)
        listener.close()


@pytest.fixture
def server(runtime):
    published(runtime, FILES, base_path="org/files")
    with uvicorn_serving(runtime) as url:
        yield url


@pytest.fixture
def upstream(tmp_path):
    """A real HTTP server for remotes, holding `remote/0`."""
    root = tmp_path / "upstream"
    (root / "remote").mkdir(parents=True)
    with FileServer(root) as file_server:
        yield file_server


def test_on_demand_fetches_once_verifies_stores_and_records(runtime, upstream):
    (upstream.root / "remote" / "0").write_bytes(LARGE)
    content_artifact_id = remote_only_file(runtime, data=LARGE,
                                           url=f"{upstream.url}remote/0")
    with uvicorn_serving(runtime) as base:
        first = curl("--fail", f"{base}{C}/od/remote/0")
        assert first.returncode == 0 and first.stdout == LARGE
        again = curl("--fail", "-r", "10-19", f"{base}{C}/od/remote/0")
        assert again.stdout == LARGE[10:20]
    assert upstream.count("/remote/0") == 1  # the second answer came from the store
    assert runtime.storage.exists(hashlib.sha256(LARGE).hexdigest())
    with runtime.db.read() as session:
        artifact_id = session.get(ContentArtifact, content_artifact_id).artifact_id
        assert session.get(Artifact, artifact_id).size == len(LARGE)


def test_streamed_files_are_relayed_and_not_stored(runtime, upstream):
    (upstream.root / "remote" / "0").write_bytes(b"passing through")
    remote_only_file(runtime, data=b"passing through", policy="streamed",
                     url=f"{upstream.url}remote/0")
    with uvicorn_serving(runtime) as base:
        for _ in range(2):
            assert curl("--fail", f"{base}{C}/od/remote/0").stdout == b"passing through"
    assert upstream.count("/remote/0") == 2
    assert not runtime.storage.exists(hashlib.sha256(b"passing through").hexdigest())


def test_bad_remote_bytes_are_cut_off_before_the_end_then_cooled_down(make_runtime,
                                                                      upstream):
    runtime = make_runtime(remote_cooldown_seconds=1.0)
    (upstream.root / "remote" / "0").write_bytes(LARGE)
    content_artifact_id = remote_only_file(runtime, data=LARGE,
                                           url=f"{upstream.url}remote/0")
    upstream.corrupt("/remote/0", LARGE[:-1] + b"!")  # same length, wrong last byte
    with uvicorn_serving(runtime) as base:
        url = f"{base}{C}/od/remote/0"
        cut = curl("--fail", url)
        assert cut.returncode == 18  # curl: the transfer ended before Content-Length
        assert len(cut.stdout) < len(LARGE)
        with runtime.db.read() as session:
            assert session.scalar(select(RemoteArtifact.failed_at).where(
                RemoteArtifact.content_artifact_id == content_artifact_id)) is not None
        cooling = curl("-w", "%{http_code}", "-o", "/dev/null", url)
        assert cooling.stdout == b"502" and upstream.count("/remote/0") == 1
        upstream.reset()
        time.sleep(1.1)
        assert curl("--fail", url).stdout == LARGE  # tried again after the cool-down
    assert not runtime.storage.exists(hashlib.sha256(LARGE[:-1] + b"!").hexdigest())


def test_a_wrong_length_is_refused_before_any_byte(runtime, upstream):
    (upstream.root / "remote" / "0").write_bytes(b"right")
    remote_only_file(runtime, data=b"right", url=f"{upstream.url}remote/0")
    upstream.corrupt("/remote/0", b"much longer and wrong")
    with uvicorn_serving(runtime) as base:
        refused = curl("-w", "%{http_code}", f"{base}{C}/od/remote/0")
    assert refused.stdout.endswith(b"502") and b"verification" in refused.stdout


def curl(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([need("curl"), "--silent", "--show-error", *args],
                          capture_output=True, timeout=TIMEOUT)


def test_curl_downloads_whole_files_ranges_and_headers(server, tmp_path):
    for path, data in FILES.items():
        target = tmp_path / "out"
        url = f"{server}{C}/org/files/{quote(path)}"
        assert curl("--fail", "-o", str(target), url).returncode == 0
        assert target.read_bytes() == data, path
    for path in ("dir/b.bin", "large/blob.bin"):
        part = curl("--fail", "-r", "0-99", f"{server}{C}/org/files/{path}")
        assert part.returncode == 0 and part.stdout == FILES[path][:100]
    head = curl("-I", f"{server}{C}/org/files/large/blob.bin")
    headers = head.stdout.decode().lower()
    assert head.returncode == 0 and headers.startswith("http/1.1 200")
    assert f"content-length: {len(LARGE)}" in headers and "accept-ranges: bytes" in headers
    manifest = curl("--fail", f"{server}{C}/org/files/PULP_MANIFEST")
    assert sorted(manifest.stdout.splitlines()) == manifest_of(FILES)


def test_curl_conditional_and_failing_requests(server, tmp_path):
    url = f"{server}{C}/org/files/a.txt"
    later = formatdate(time.time() + 3600, usegmt=True)
    fresh = curl("-z", later, "-w", "%{http_code}", "-o", str(tmp_path / "x"), url)
    assert fresh.stdout == b"304" and not (tmp_path / "x").exists()
    older = curl("-z", formatdate(time.time() - 86400, usegmt=True), url)
    assert older.stdout == FILES["a.txt"]
    missing = curl("--fail", f"{server}{C}/org/files/nope.txt")
    assert missing.returncode == 22  # curl's exit status for an HTTP error with --fail
    assert curl("--fail", f"{server}{C}/elsewhere/a.txt").returncode == 22


def test_wget_downloads_a_file(server, tmp_path):
    target = tmp_path / "b.bin"
    result = subprocess.run([need("wget"), "-q", "-O", str(target),
                             f"{server}{C}/org/files/dir/b.bin"], timeout=TIMEOUT)
    assert result.returncode == 0 and target.read_bytes() == FILES["dir/b.bin"]


def test_wget_mirrors_a_distribution_through_its_listings(server, tmp_path):
    mirror = tmp_path / "mirror"
    result = subprocess.run(
        [need("wget"), "-q", "-r", "-np", "-nH", "--cut-dirs=4", "-R", "index.html*",
         "-e", "robots=off", "-P", str(mirror), f"{server}{C}/org/files/"],
        timeout=TIMEOUT, capture_output=True)
    assert result.returncode == 0, result.stderr
    got = {str(p.relative_to(mirror)): p.read_bytes() for p in mirror.rglob("*") if p.is_file()}
    assert sorted(got.pop("PULP_MANIFEST").splitlines()) == manifest_of(FILES)
    assert got == FILES


def test_pallet_content_app_serves_alone_and_follows_changes(runtime, tmp_path):
    """The scale-out process: no API, and changes made by another process show within
    content_cache_seconds."""
    published(runtime, FILES, base_path="files")
    port = free_port()
    env = pallet_env(runtime.settings, PALLET_CONTENT_CACHE_SECONDS="0.2")
    env.pop("PALLET_CONFIG", None)
    log_path = tmp_path / "content-app.log"
    with open(log_path, "wb") as log:
        process = subprocess.Popen([sys.executable, "-m", "pallet.cli.main", "content-app",
                                    "--host", "127.0.0.1", "--port", str(port)],
                                   env=env, stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        def answers():
            assert process.poll() is None, log_path.read_text()
            try:
                return httpx.get(f"{base}{C}/files/a.txt", timeout=1).status_code == 200
            except httpx.HTTPError:
                return False

        wait_until(answers, 30, f"pallet content-app did not answer:\n{log_path.read_text()}")
        assert httpx.get(f"{base}{C}/files/dir/b.bin").content == FILES["dir/b.bin"]
        assert httpx.get(f"{base}/api/v1/status").status_code == 404
        with runtime.db.write() as session:
            session.scalar(select(Distribution).where(Distribution.base_path == "files")
                           ).base_path = "renamed"
        # Cached answers for the old path go within content_cache_seconds.
        wait_until(lambda: httpx.get(f"{base}{C}/files/a.txt").status_code == 404, 5,
                   "the content app did not see the change")
        assert httpx.get(f"{base}{C}/renamed/a.txt").status_code == 200
    finally:
        stop(process)
    assert os.path.exists(log_path)
