"""Syncing from real HTTP servers on 127.0.0.1 (and file:// directories): versions, policies,
retries, credentials, TLS, and hostile input that must fail cleanly."""

from __future__ import annotations

import hashlib
import os
import time

import pytest
from sqlalchemy import func, select

from pallet.artifacts.models import Artifact
from pallet.content.models import Content, ContentArtifact
from pallet.remotes.downloader import DownloadError
from pallet.remotes.models import Remote, RemoteArtifact
from pallet.remotes.sync import sync_repository
from pallet.repositories.service import create_repository as make_repository
from pallet.runtime import Runtime
from pallet.repositories.models import Repository
from tests.conftest import make_settings, wait_for_task
from tests.http_fixtures import file_server, make_tls, write_repository  # noqa: F401

FILES = {"a.txt": b"alpha\n", "dir/b.txt": b"bravo" * 200, "dir/sub/c.bin": os.urandom(3000)}
SHA = {path: hashlib.sha256(data).hexdigest() for path, data in FILES.items()}


@pytest.fixture
def allowed(tmp_path):
    directory = tmp_path / "allowed"
    directory.mkdir()
    return directory


@pytest.fixture
def settings(tmp_path, database_url, allowed):
    return make_settings(tmp_path, database_url, allowed_import_dirs=[allowed])


@pytest.fixture
def upstream(tmp_path, file_server):
    """A server for a directory holding FILES and their PULP_MANIFEST."""
    write_repository(tmp_path / "upstream", FILES)
    return file_server(tmp_path / "upstream")


def create_remote(client, name: str, url: str, **options) -> dict:
    body = {"name": name, "url": url, "max_retries": 1, "connect_timeout": 5,
            "read_timeout": 5, **options}
    response = client.post("/api/v1/remotes", json=body)
    assert response.status_code == 201, response.text
    return response.json()


def create_repository(client, name: str = "repo") -> dict:
    response = client.post("/api/v1/repositories", json={"name": name})
    assert response.status_code == 201, response.text
    return response.json()


def sync(client, repository: str = "repo", **body) -> dict:
    response = client.post(f"/api/v1/repositories/{repository}/sync", json=body)
    assert response.status_code == 202, response.text
    return wait_for_task(client, response.json()["href"])


def completed(task: dict) -> dict:
    assert task["state"] == "completed", task["error"]
    return task["result"]


def failed(task: dict, *words: str) -> dict:
    assert task["state"] == "failed", task
    error = task["error"]
    for word in words:
        assert word in error["message"], error
    assert "Traceback" not in str(error)
    return error


def paths(client, repository: str = "repo", version: int | None = None) -> dict[str, str]:
    query = f"/api/v1/content?repository={repository}&limit=1000"
    if version is not None:
        query += f"&version={version}"
    body = client.get(query).json()
    return {a["relative_path"]: a["sha256"] for c in body["results"] for a in c["artifacts"]}


def latest(client, repository: str = "repo") -> int:
    return client.get(f"/api/v1/repositories/{repository}").json()["latest_version"]


def counts(runtime) -> dict[str, int]:
    with runtime.db.read() as session:
        return {model.__name__: session.scalar(select(func.count()).select_from(model))
                for model in (Artifact, Content, ContentArtifact, RemoteArtifact)}


def stored(runtime, data: bytes) -> bool:
    return runtime.storage.exists(hashlib.sha256(data).hexdigest())


def tmp_files(runtime) -> list[str]:
    return os.listdir(runtime.storage.tmp)


# -- the happy paths --------------------------------------------------------------------------

def test_immediate_sync_makes_a_version_of_verified_artifacts(client, workers, runtime,
                                                              upstream):
    create_remote(client, "up", upstream.url)
    create_repository(client)
    result = completed(sync(client, remote="up"))
    assert result["version"] == 1 and result["units"] == 3
    assert result["downloaded"] == 3 and result["bytes"] == sum(map(len, FILES.values()))
    assert paths(client) == SHA
    for data in FILES.values():
        assert runtime.storage.hash_stored(hashlib.sha256(data).hexdigest()) == \
            hashlib.sha256(data).hexdigest()
    with runtime.db.read() as session:
        links = session.execute(select(ContentArtifact.size, ContentArtifact.artifact_id)).all()
        assert sorted(size for size, _ in links) == sorted(map(len, FILES.values()))
        assert all(artifact_id is not None for _, artifact_id in links)
        urls = set(session.scalars(select(RemoteArtifact.url)))
    assert urls == {upstream.url + path for path in FILES}
    assert tmp_files(runtime) == []

    # Again, nothing changed: no version, nothing downloaded.
    again = completed(sync(client, remote="up"))
    assert again["version"] is None and again["downloaded"] == 0 and latest(client) == 1
    assert upstream.count("/a.txt") == 1


def test_default_remote_and_type_checks(client, workers, runtime, upstream):
    create_remote(client, "up", upstream.url)
    repository = create_repository(client)
    response = client.post("/api/v1/repositories/repo/sync", json={})
    assert response.status_code == 400 and "has no remote" in response.json()["error"]["message"]
    with runtime.db.write() as session:  # the repository API sets it too (another change)
        row = session.scalar(select(Repository).where(Repository.name == repository["name"]))
        row.remote_id = session.scalar(select(Remote.id).where(Remote.name == "up"))
    assert completed(sync(client))["version"] == 1
    assert client.post("/api/v1/repositories/repo/sync",
                       json={"remote": "nope"}).status_code == 404
    assert client.post("/api/v1/repositories/nope/sync", json={}).status_code == 404


def test_autopublish_comes_with_the_version(client, workers, runtime, upstream):
    create_remote(client, "up", upstream.url)
    create_repository(client)
    with runtime.db.write() as session:  # the repository API sets it too (another change)
        session.scalar(select(Repository).where(Repository.name == "repo")).autopublish = True
    result = completed(sync(client, remote="up"))
    assert result["version"] == 1 and result["publication"] is not None
    publication = client.get(f"/api/v1/publications/{result['publication']}")
    assert publication.status_code == 200, publication.text
    again = completed(sync(client, remote="up"))
    assert again["version"] is None and "publication" not in again


def test_mirror_removes_what_is_gone_additive_keeps_it(client, workers, runtime, tmp_path,
                                                       upstream):
    create_remote(client, "up", upstream.url)
    create_repository(client)
    completed(sync(client, remote="up"))
    changed = {"a.txt": b"alpha two\n", "new.txt": b"new"}
    (tmp_path / "upstream" / "dir" / "b.txt").unlink()
    write_repository(tmp_path / "upstream", {**changed, "dir/sub/c.bin": FILES["dir/sub/c.bin"]})

    additive = completed(sync(client, remote="up"))
    assert additive["version"] == 2 and additive["downloaded"] == 2
    assert set(paths(client)) == {"a.txt", "dir/b.txt", "dir/sub/c.bin", "new.txt"}
    # The new a.txt is another unit (another sha256): it replaces the old one at its path.
    assert client.get("/api/v1/content?repository=repo").json()["count"] == 4
    assert paths(client)["a.txt"] == hashlib.sha256(changed["a.txt"]).hexdigest()

    mirror = completed(sync(client, remote="up", mirror=True))
    assert mirror["version"] == 3 and mirror["downloaded"] == 0
    assert paths(client) == {"a.txt": hashlib.sha256(changed["a.txt"]).hexdigest(),
                             "new.txt": hashlib.sha256(b"new").hexdigest(),
                             "dir/sub/c.bin": SHA["dir/sub/c.bin"]}
    assert set(paths(client, version=1)) == set(FILES)


def test_on_demand_stores_no_bytes_but_records_where_they_are(client, workers, runtime,
                                                              upstream):
    create_remote(client, "lazy", upstream.url, policy="on_demand")
    create_repository(client)
    result = completed(sync(client, remote="lazy"))
    assert result["version"] == 1 and result["downloaded"] == 0
    assert counts(runtime)["Artifact"] == 0 and upstream.count("/a.txt") == 0
    assert not any(stored(runtime, data) for data in FILES.values())
    with runtime.db.read() as session:
        rows = session.execute(select(ContentArtifact.relative_path, ContentArtifact.size,
                                      ContentArtifact.artifact_id, RemoteArtifact.url,
                                      RemoteArtifact.size)
                               .join(RemoteArtifact, RemoteArtifact.content_artifact_id
                                     == ContentArtifact.id)).all()
    assert {(path, size, artifact_id, url, remote_size) for path, size, artifact_id, url,
            remote_size in rows} == {(p, len(d), None, upstream.url + p, len(d))
                                     for p, d in FILES.items()}

    # An immediate sync of the same files later stores them and links the existing units.
    create_remote(client, "eager", upstream.url)
    result = completed(sync(client, remote="eager"))
    assert result["version"] is None and result["downloaded"] == 3
    with runtime.db.read() as session:
        assert session.scalar(select(func.count()).select_from(ContentArtifact)
                              .where(ContentArtifact.artifact_id.is_(None))) == 0
        assert session.scalar(select(func.count()).select_from(RemoteArtifact)) == 6


def test_moved_urls_are_updated(client, workers, runtime, tmp_path, file_server, upstream):
    create_remote(client, "up", upstream.url, policy="on_demand")
    create_repository(client)
    completed(sync(client, remote="up"))
    write_repository(tmp_path / "moved", FILES)
    other = file_server(tmp_path / "moved")
    assert client.patch("/api/v1/remotes/up", json={"url": other.url}).status_code == 200
    assert completed(sync(client, remote="up"))["version"] is None
    with runtime.db.read() as session:
        assert set(session.scalars(select(RemoteArtifact.url))) == \
            {other.url + path for path in FILES}


def test_file_url_sync_from_an_allowed_directory(client, workers, runtime, allowed):
    write_repository(allowed / "tree", FILES)
    create_remote(client, "local", (allowed / "tree").as_uri() + "/")
    create_repository(client)
    result = completed(sync(client, remote="local"))
    assert result["version"] == 1 and result["downloaded"] == 3 and paths(client) == SHA


def test_file_url_that_became_a_link_out_is_refused_at_sync(client, workers, runtime,
                                                            allowed, tmp_path):
    write_repository(allowed / "tree", FILES)
    create_remote(client, "local", (allowed / "tree").as_uri() + "/")
    create_repository(client)
    outside = tmp_path / "outside"
    write_repository(outside, FILES)
    (allowed / "tree").rename(allowed / "was-tree")
    (allowed / "tree").symlink_to(outside)
    response = client.post("/api/v1/repositories/repo/sync", json={"remote": "local"})
    assert response.status_code == 400
    assert "allowed import director" in response.json()["error"]["message"]


def test_existing_stored_bytes_are_reused(client, workers, runtime, upstream):
    with runtime.storage.writer() as writer:
        writer.write(FILES["a.txt"])
        writer.commit()
    create_remote(client, "up", upstream.url)
    create_repository(client)
    result = completed(sync(client, remote="up"))
    assert (result["downloaded"], result["reused"]) == (2, 1)
    assert upstream.count("/a.txt") == 0 and counts(runtime)["Artifact"] == 3


# -- the network: retries, credentials, TLS, proxy --------------------------------------------

def test_server_errors_are_retried(client, workers, runtime, upstream):
    upstream.fail("/a.txt", 500, times=2)
    upstream.fail("/PULP_MANIFEST", 503, times=1)
    create_remote(client, "up", upstream.url, max_retries=3)
    create_repository(client)
    assert completed(sync(client, remote="up"))["version"] == 1
    assert upstream.count("/a.txt") == 3 and upstream.count("/PULP_MANIFEST") == 2


def test_basic_auth_and_headers_reach_the_server(client, workers, runtime, upstream):
    upstream.require_auth("mirror", "s3cret")
    create_remote(client, "noauth", upstream.url)
    create_repository(client)
    failed(sync(client, remote="noauth"), "401")
    create_remote(client, "up", upstream.url, username="mirror", password="s3cret",
                  headers={"X-Mirror-Token": "abc 123"})
    assert completed(sync(client, remote="up"))["version"] == 1
    seen = [r for r in upstream.requests if r.path == "/dir/b.txt"]
    assert seen and all(r.headers.get("x-mirror-token") == "abc 123" for r in seen)
    assert all(r.headers.get("accept-encoding") == "identity" for r in seen)


def test_proxy_with_credentials(client, workers, runtime, tmp_path, file_server, upstream):
    write_repository(tmp_path / "proxied", FILES)
    proxy = file_server(tmp_path / "proxied")
    proxy.require_proxy_auth("p", "pw")
    # The upstream's address is only reached through the proxy, which serves it itself.
    create_remote(client, "up", "http://127.0.0.1:9/", proxy_url=proxy.url.rstrip("/"),
                  proxy_username="p", proxy_password="pw")
    create_repository(client)
    assert completed(sync(client, remote="up"))["version"] == 1
    assert all(r.proxied for r in proxy.requests) and len(proxy.requests) == 4


def test_tls_with_a_ca_and_without(client, workers, runtime, tmp_path, file_server):
    write_repository(tmp_path / "secure", FILES)
    tls = make_tls(tmp_path / "tls")
    server = file_server(tmp_path / "secure", tls=tls, require_client_cert=True)
    create_repository(client)
    create_remote(client, "untrusted", server.url)
    error = failed(sync(client, remote="untrusted"), "certificate")
    assert error["details"]["url"] == server.url + "PULP_MANIFEST"
    create_remote(client, "no-client-cert", server.url, ca_cert=tls.ca_cert)
    failed(sync(client, remote="no-client-cert"), "PULP_MANIFEST")  # an alert, or a reset
    create_remote(client, "trusted", server.url, ca_cert=tls.ca_cert,
                  client_cert=tls.client_cert, client_key=tls.client_key)
    assert completed(sync(client, remote="trusted"))["version"] == 1
    assert paths(client) == SHA


# -- bad input (issue 3, item 9) --------------------------------------------------------------

def assert_nothing_new(client, runtime, data: bytes | None = None) -> None:
    assert latest(client) == 0
    if data is not None:
        assert not stored(runtime, data)
        with runtime.db.read() as session:
            assert session.scalar(select(Artifact.id).where(
                Artifact.sha256 == hashlib.sha256(data).hexdigest())) is None
    assert tmp_files(runtime) == []


@pytest.mark.parametrize("line, words", [
    ("b.txt,abc,3\n", ["line 4", "sha256"]),
    ("only-two,fields\n", ["line 4", "relative_path,sha256,size"]),
    ("a.txt,{sha},6\n", ["line 4", "listed twice"]),
    ("../escape.txt,{sha},6\n", ["line 4", "'..'"]),
    ("/etc/passwd,{sha},6\n", ["line 4", "relative"]),
    ("big.bin,{sha},99999999999999999999\n", ["line 4", "size"]),
])
def test_malformed_manifests_fail_with_the_line(client, workers, runtime, tmp_path,
                                                file_server, line, words):
    extra = line.format(sha=SHA["a.txt"])
    write_repository(tmp_path / "bad", FILES, extra_lines=extra)
    server = file_server(tmp_path / "bad")
    create_remote(client, "bad", server.url)
    create_repository(client)
    error = failed(sync(client, remote="bad"), "PULP_MANIFEST", *words)
    assert error["code"] == "invalid" and error["details"]["line"] == 4
    assert_nothing_new(client, runtime)


@pytest.mark.parametrize("hook, words", [
    (lambda s: s.fail("/dir/b.txt", 404), ["404", "dir/b.txt"]),
    (lambda s: s.fail("/dir/b.txt", 500, times=-1), ["500", "dir/b.txt"]),
    (lambda s: s.corrupt("/dir/b.txt", b"bravo" * 199 + b"BRAVO"), ["sha256", "dir/b.txt"]),
    (lambda s: s.corrupt("/dir/b.txt", b"short"), ["announced", "dir/b.txt"]),
    (lambda s: s.stall("/dir/b.txt", 5), ["read_timeout", "dir/b.txt"]),
    (lambda s: s.redirect_loop("/dir/b.txt"), ["redirect", "dir/b.txt"]),
    (lambda s: s.huge_length("/dir/b.txt"), ["announced", "dir/b.txt"]),
    (lambda s: (s.corrupt("/dir/b.txt", FILES["dir/b.txt"] + b"x"),
                s.without_length("/dir/b.txt")), ["more than the 1000 bytes", "dir/b.txt"]),
])
def test_bad_remotes_fail_cleanly(client, workers, runtime, upstream, hook, words):
    hook(upstream)
    create_remote(client, "up", upstream.url, read_timeout=0.3, max_retries=1)
    create_repository(client)
    started = time.monotonic()
    error = failed(sync(client, remote="up"), *words)
    assert time.monotonic() - started < 10
    assert error["details"]["url"] == upstream.url + "dir/b.txt"
    assert error["details"]["failures"][0]["url"] == upstream.url + "dir/b.txt"
    assert_nothing_new(client, runtime, FILES["dir/b.txt"])
    # What did verify stays stored, and the next sync reuses it.
    upstream.reset()
    result = completed(sync(client, remote="up"))
    assert result["version"] == 1 and paths(client) == SHA
    assert result["downloaded"] >= 1 and result["downloaded"] + result["reused"] == 3


def test_huge_or_stalled_index_fails(client, workers, runtime, upstream):
    upstream.huge_length("/PULP_MANIFEST")
    create_remote(client, "up", upstream.url, read_timeout=0.3, max_retries=0)
    create_repository(client)
    failed(sync(client, remote="up"), "index is too large")
    upstream.reset()
    upstream.stall("/PULP_MANIFEST", 5)
    failed(sync(client, remote="up"), "read_timeout", "PULP_MANIFEST")
    assert_nothing_new(client, runtime)


def test_index_body_larger_than_the_limit_fails(tmp_path, database_url, file_server):
    write_repository(tmp_path / "up", FILES)
    server = file_server(tmp_path / "up")
    runtime = Runtime.create(make_settings(tmp_path, database_url, max_index_size=100))
    try:
        with runtime.db.write() as session:
            remote = Remote(name="up", type="file", url=server.url, headers={})
            session.add(remote)
            repository = make_repository(session, runtime.plugins, name="r", type="file")
            ids = {"remote_id": remote.id, "repository_id": repository.id}
        with pytest.raises(DownloadError, match="index is too large .*announced"):
            sync_repository(runtime, _Task(), **ids)
        server.without_length("/PULP_MANIFEST")  # it grows past the limit while read
        with pytest.raises(DownloadError, match="index is too large .*more than 100 bytes"):
            sync_repository(runtime, _Task(), **ids)
        assert tmp_files(runtime) == []
    finally:
        runtime.close()


class _Task:
    """Enough of a running task for calling the sync directly."""

    def __init__(self) -> None:
        self.created_resources, self.result = [], None

    def progress(self, stage, done=0, total=None) -> None:
        pass

    def created(self, href) -> None:
        self.created_resources.append(href)

    def check_canceled(self) -> None:
        pass


def test_missing_index_fails(client, workers, runtime, upstream):
    upstream.fail("/PULP_MANIFEST", 404)
    create_remote(client, "up", upstream.url)
    create_repository(client)
    error = failed(sync(client, remote="up"), "404", "PULP_MANIFEST")
    assert error["code"] == "download_failed" and error["details"]["status"] == 404
    assert_nothing_new(client, runtime)


def test_cancel_during_downloads_makes_no_version(client, workers, runtime, upstream):
    upstream.slow("/dir/b.txt", 20)
    create_remote(client, "up", upstream.url, read_timeout=30)
    create_repository(client)
    task = client.post("/api/v1/repositories/repo/sync", json={"remote": "up"}).json()
    deadline = time.monotonic() + 10
    while upstream.count("/dir/b.txt") == 0 and time.monotonic() < deadline:
        time.sleep(0.05)
    started = time.monotonic()
    assert client.post(f"{task['href']}/cancel").status_code == 200
    final = wait_for_task(client, task["href"], timeout=10)
    assert final["state"] == "canceled" and time.monotonic() - started < 5
    assert latest(client) == 0 and not stored(runtime, FILES["dir/b.txt"])
    assert tmp_files(runtime) == []


# -- the downloader's stream, as the content app uses it --------------------------------------

def test_stream_never_hands_out_a_complete_bad_file(runtime, tmp_path, file_server):
    import asyncio

    from pallet.plugin import RemoteFile
    from pallet.remotes.downloader import DigestMismatch, Downloader, RemoteConfig

    big = os.urandom(3 << 20)
    write_repository(tmp_path / "up", {"big.bin": big, "small.txt": b"small"})
    server = file_server(tmp_path / "up")
    good = RemoteFile(server.url + "big.bin", hashlib.sha256(big).hexdigest(), len(big))

    async def collect(file, store):
        received = []
        async with Downloader(RemoteConfig(url=server.url, max_retries=0), runtime.settings,
                              runtime.storage) as downloader:
            try:
                async for chunk in downloader.stream(file, store=store):
                    received.append(chunk)
            except DigestMismatch as exc:
                return b"".join(received), exc
        return b"".join(received), None

    assert asyncio.run(collect(good, store=False)) == (big, None)
    assert not runtime.storage.exists(good.sha256)
    assert asyncio.run(collect(good, store=True)) == (big, None)
    assert runtime.storage.hash_stored(good.sha256) == good.sha256
    runtime.storage.delete(good.sha256)

    server.corrupt("/big.bin", big[:-1] + bytes([big[-1] ^ 1]))
    received, error = asyncio.run(collect(good, store=True))
    assert error is not None and "sha256" in error.message
    assert len(received) < len(big) and big.startswith(received)
    assert not runtime.storage.exists(good.sha256) and tmp_files(runtime) == []

    server.corrupt("/big.bin", big + b"more")  # announced longer than expected: no byte out
    received, error = asyncio.run(collect(good, store=False))
    assert received == b"" and "announced" in error.message


def test_large_files_stream_to_the_store(client, workers, runtime, tmp_path, file_server):
    """Files above the in-memory size go through the streaming path: same checks."""
    large = os.urandom(3 << 20)
    write_repository(tmp_path / "up", {"large.bin": large, "a.txt": b"a"})
    server = file_server(tmp_path / "up")
    server.corrupt("/large.bin", large[:-1] + b"\0")
    create_remote(client, "up", server.url, max_retries=0)
    create_repository(client)
    failed(sync(client, remote="up"), "sha256", "large.bin")
    assert_nothing_new(client, runtime, large)
    server.reset()
    result = completed(sync(client, remote="up"))
    assert result["version"] == 1 and result["bytes"] >= len(large)
    sha = hashlib.sha256(large).hexdigest()
    assert runtime.storage.hash_stored(sha) == sha
