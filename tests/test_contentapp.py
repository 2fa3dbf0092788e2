"""The content app in process: what it serves for each kind of distribution, HTTP semantics,
listings, refusals, cache invalidation and how few queries it makes."""

from __future__ import annotations

import asyncio
import hashlib
import time
from contextlib import contextmanager
from datetime import datetime, timezone
from email.utils import formatdate
from urllib.parse import urljoin

import pytest
from sqlalchemy import event, select
from starlette.testclient import TestClient

from pallet.api.app import create_server_app
from pallet.artifacts.service import record_artifact
from pallet.content.models import Content, ContentArtifact
from pallet.content.service import create_content
from pallet.contentapp import app as content_module
from pallet.contentapp import http
from pallet.contentapp.app import ContentApp
from pallet.contentapp.lookup import timestamp
from pallet.distributions.models import Distribution
from pallet.publications.service import publish
from pallet.remotes.models import Remote, RemoteArtifact
from pallet.repositories import service as repositories
from pallet.repositories import versions
from pallet.repositories.models import RepositoryVersion
from pallet.runtime import Runtime
from tests.conftest import make_settings
from tests.processes import bulk_file_units

C = "/pallet/content"
FILES = {"a.txt": b"alpha\n", "dir/b.bin": bytes(range(256)) * 400, "dir/sub/c.txt": b"c"}


# -- building what is served, through the services ------------------------------------------

def add_files(runtime, files: dict[str, bytes]) -> dict[str, int]:
    """File units with stored bytes; returns {path: content id}."""
    ids = {}
    with runtime.db.write() as session:
        for path, data in files.items():
            with runtime.storage.writer() as writer:
                writer.write(data)
                sha256 = writer.commit()
            record_artifact(session, sha256=sha256, size=len(data))
            content, _ = create_content(session, runtime.plugins, type="file",
                                        fields={"relative_path": path, "sha256": sha256})
            session.flush()
            ids[path] = content.id
    return ids


def make_repository(runtime, name: str = "r") -> None:
    with runtime.db.write() as session:
        repositories.create_repository(session, runtime.plugins, name=name, type="file")


def new_version(runtime, name: str = "r", *, add=(), remove=()) -> int:
    with runtime.db.write() as session:
        repository = repositories.get_repository(session, name)
        version = versions.create_version(session, runtime.plugins, repository, add=add,
                                          remove=remove)
        return version.id


def publish_latest(runtime, name: str = "r") -> int:
    with runtime.db.write() as session:
        repository = repositories.get_repository(session, name)
        publication, _ = publish(session, runtime.plugins, runtime.storage, repository,
                                 versions.latest_version(session, repository))
        return publication.id


def distribute(runtime, base_path: str, *, hidden: bool = False, **target) -> None:
    with runtime.db.write() as session:
        if "repository" in target:
            target["repository_id"] = repositories.get_repository(
                session, target.pop("repository")).id
        session.add(Distribution(name=base_path.replace("/", "-"), base_path=base_path,
                                 hidden=hidden, **target))


def published(runtime, files=FILES, base_path: str = "d") -> int:
    """A repository holding `files`, published and distributed at `base_path`."""
    make_repository(runtime)
    new_version(runtime, add=add_files(runtime, files).values())
    publication_id = publish_latest(runtime)
    distribute(runtime, base_path, publication_id=publication_id)
    return publication_id


@pytest.fixture
def make_runtime(tmp_path, database_url):
    made = []

    def make(**overrides) -> Runtime:
        made.append(Runtime.create(make_settings(tmp_path, database_url, **overrides)))
        return made[-1]

    yield make
    for runtime in made:
        runtime.close()


@contextmanager
def serving(runtime):
    app = ContentApp(runtime)
    with TestClient(app, follow_redirects=False) as client:
        client.app_instance = app
        yield client


@pytest.fixture
def web(runtime):
    with serving(runtime) as client:
        yield client


def call(app: ContentApp, path: str, *, method: str = "GET", headers=(), extensions=None):
    """One request straight through the ASGI interface (no client normalizing the path)."""
    messages = []

    async def run():
        asked = asyncio.Event()

        async def receive():
            if asked.is_set():
                await asyncio.Event().wait()  # nobody disconnects
            asked.set()
            return {"type": "http.request", "body": b"", "more_body": False}

        async def send(message):
            messages.append(message)

        scope = {"type": "http", "method": method, "path": path, "query_string": b"",
                 "http_version": "1.1", "extensions": extensions or {},
                 "headers": [(k.encode(), v.encode()) for k, v in headers]}
        await app.handle(scope, receive, send)

    asyncio.run(run())
    return messages


@contextmanager
def counting_queries(runtime):
    statements = []

    def count(conn, cursor, statement, parameters, context, executemany):
        statements.append(statement)

    event.listen(runtime.db.engine, "before_cursor_execute", count)
    try:
        yield statements
    finally:
        event.remove(runtime.db.engine, "before_cursor_execute", count)


def manifest_of(files: dict[str, bytes]) -> list[bytes]:
    """A PULP_MANIFEST's lines, sorted (the publisher writes them in content order)."""
    return sorted(f"{p},{hashlib.sha256(d).hexdigest()},{len(d)}".encode()
                  for p, d in files.items())


# -- what is served ----------------------------------------------------------------------------

def test_a_publication_serves_its_metadata_and_its_files(runtime, web):
    published(runtime)
    manifest = web.get(f"{C}/d/PULP_MANIFEST")
    assert manifest.status_code == 200
    assert sorted(manifest.content.splitlines()) == manifest_of(FILES)
    assert manifest.headers["cache-control"] == "public, max-age=60"
    for path, data in FILES.items():
        response = web.get(f"{C}/d/{path}")
        assert response.status_code == 200 and response.content == data
        assert response.headers["etag"] == f'"{hashlib.sha256(data).hexdigest()}"'
        assert response.headers["content-length"] == str(len(data))
        assert response.headers["accept-ranges"] == "bytes"
        assert response.headers["cache-control"] == "public, max-age=31536000, immutable"
        assert "last-modified" in response.headers
    assert web.get(f"{C}/d/a.txt").headers["content-type"] == "text/plain"
    assert web.get(f"{C}/d/dir/b.bin").headers["content-type"] == "application/octet-stream"
    assert web.get(f"{C}/d/missing.txt").status_code == 404


def test_a_version_serves_its_content_without_metadata(runtime, web):
    make_repository(runtime)
    version_id = new_version(runtime, add=add_files(runtime, FILES).values())
    distribute(runtime, "v", repository_version_id=version_id)
    assert web.get(f"{C}/v/dir/sub/c.txt").content == b"c"
    assert web.get(f"{C}/v/PULP_MANIFEST").status_code == 404
    with runtime.db.read() as session:
        created = session.get(RepositoryVersion, version_id).created_at
    assert web.get(f"{C}/v/a.txt").headers["last-modified"] == formatdate(
        timestamp(created), usegmt=True)


def test_a_repository_serves_its_newest_publication_at_once(runtime, web):
    make_repository(runtime)
    first = add_files(runtime, {"a.txt": b"one"})
    new_version(runtime, add=first.values())
    publish_latest(runtime)
    distribute(runtime, "repo", repository="r")
    assert web.get(f"{C}/repo/a.txt").content == b"one"
    # Content behind a repository may change at the same path: no immutable promise.
    assert web.get(f"{C}/repo/a.txt").headers["cache-control"] == "public, max-age=60"
    second = add_files(runtime, {"a.txt": b"two", "new.txt": b"new"})
    new_version(runtime, add=second.values(), remove=first.values())
    assert web.get(f"{C}/repo/a.txt").content == b"one"  # a version alone changes nothing
    publish_latest(runtime)
    assert web.get(f"{C}/repo/a.txt").content == b"two"
    assert web.get(f"{C}/repo/new.txt").content == b"new"
    assert sorted(web.get(f"{C}/repo/PULP_MANIFEST").content.splitlines()) == manifest_of(
        {"a.txt": b"two", "new.txt": b"new"})


def test_a_superseded_publication_serves_missing_paths_for_the_grace_period(make_runtime):
    runtime = make_runtime(publication_grace_seconds=1.0)
    make_repository(runtime)
    old = add_files(runtime, {"old.txt": b"old", "kept.txt": b"v1"})
    new_version(runtime, add=old.values())
    publish_latest(runtime)
    distribute(runtime, "repo", repository="r")
    with serving(runtime) as web:
        assert web.get(f"{C}/repo/old.txt").content == b"old"
        new = add_files(runtime, {"kept.txt": b"v2"})
        new_version(runtime, add=new.values(), remove=old.values())
        publish_latest(runtime)
        assert web.get(f"{C}/repo/old.txt").content == b"old"  # in flight: still there
        assert web.get(f"{C}/repo/kept.txt").content == b"v2"  # the newest wins
        assert b"old.txt" not in web.get(f"{C}/repo/").content  # listings show the newest
        time.sleep(1.1)
        assert web.get(f"{C}/repo/old.txt").status_code == 404


def test_a_repository_without_publications_serves_nothing_yet(runtime, web):
    make_repository(runtime)
    new_version(runtime, add=add_files(runtime, FILES).values())
    distribute(runtime, "repo", repository="r")
    assert web.get(f"{C}/repo/a.txt").status_code == 404


def test_unknown_base_paths_and_the_root_redirect(runtime, web):
    published(runtime, base_path="org/d")
    assert web.get(f"{C}/nothing/a.txt").status_code == 404
    assert web.get(f"{C}/org/other/a.txt").status_code == 404
    assert web.get(f"{C}/org/d/a.txt").content == FILES["a.txt"]
    response = web.get(C)
    assert response.status_code == 301 and response.headers["location"] == f"{C}/"
    assert web.get("/pallet/contents/org/d/a.txt").status_code == 404


# -- HTTP -------------------------------------------------------------------------------------

def test_byte_ranges(runtime, web):
    published(runtime)
    data, url = FILES["dir/b.bin"], f"{C}/d/dir/b.bin"
    size = len(data)
    for header, first, last in [("bytes=0-99", 0, 99), ("bytes=100-", 100, size - 1),
                                ("bytes=-10", size - 10, size - 1),
                                ("bytes=5-99999999", 5, size - 1)]:
        response = web.get(url, headers={"Range": header})
        assert response.status_code == 206, header
        assert response.content == data[first:last + 1]
        assert response.headers["content-range"] == f"bytes {first}-{last}/{size}"
        assert response.headers["content-length"] == str(last - first + 1)
    refused = web.get(url, headers={"Range": f"bytes={size}-"})
    assert refused.status_code == 416 and refused.headers["content-range"] == f"bytes */{size}"
    for ignored in ("bytes=0-1,5-9", "bytes=9-3", "lines=1-2", "bytes=x-"):
        response = web.get(url, headers={"Range": ignored})
        assert response.status_code == 200 and response.content == data, ignored
    tag = web.get(url).headers["etag"]
    assert web.get(url, headers={"Range": "bytes=0-0", "If-Range": tag}).status_code == 206
    stale = web.get(url, headers={"Range": "bytes=0-0", "If-Range": '"other"'})
    assert stale.status_code == 200 and stale.content == data


def test_large_files_are_streamed_whole_and_in_ranges(runtime, web):
    large = hashlib.sha256(b"seed").digest() * (3 * 2**20 // 32 + 7)  # > 3 MiB, odd end
    published(runtime, {"large.bin": large})
    assert web.get(f"{C}/d/large.bin").content == large
    first, last = 2**20 - 5, 2**21 + 5  # across read-block boundaries
    response = web.get(f"{C}/d/large.bin", headers={"Range": f"bytes={first}-{last}"})
    assert response.status_code == 206 and response.content == large[first:last + 1]


def test_head_answers_headers_only(runtime, web):
    published(runtime)
    response = web.head(f"{C}/d/dir/b.bin")
    assert response.status_code == 200 and response.content == b""
    assert response.headers["content-length"] == str(len(FILES["dir/b.bin"]))
    assert web.head(f"{C}/d/nope").status_code == 404
    assert web.head(f"{C}/d/").status_code == 200


def test_conditional_requests_answer_304(runtime, web):
    published(runtime)
    url = f"{C}/d/a.txt"
    full = web.get(url)
    tag, modified = full.headers["etag"], full.headers["last-modified"]
    for headers in ({"If-None-Match": tag}, {"If-None-Match": f'"x", W/{tag}'},
                    {"If-None-Match": "*"}, {"If-Modified-Since": modified},
                    {"If-Modified-Since": formatdate(time.time() + 60, usegmt=True)}):
        response = web.get(url, headers=headers)
        assert response.status_code == 304 and response.content == b"", headers
        assert response.headers["etag"] == tag
    for headers in ({"If-None-Match": '"other"'},
                    {"If-Modified-Since": formatdate(time.time() - 86400, usegmt=True)},
                    {"If-Modified-Since": "yesterday"},
                    # If-None-Match decides alone when both are sent.
                    {"If-None-Match": '"other"', "If-Modified-Since": modified}):
        assert web.get(url, headers=headers).status_code == 200, headers


def test_other_methods_are_refused(runtime, web):
    published(runtime)
    for method in ("POST", "PUT", "DELETE", "PATCH"):
        response = web.request(method, f"{C}/d/a.txt")
        assert response.status_code == 405 and response.headers["allow"] == "GET, HEAD"


def test_traversal_and_odd_paths_never_reach_a_file(runtime, web):
    published(runtime)
    app = web.app_instance
    for path, status in [(f"{C}/d/../d/a.txt", 404), (f"{C}/d/./a.txt", 404),
                         (f"{C}/d//a.txt", 404), (f"{C}/../../etc/passwd", 404),
                         (f"{C}/d/a.txt/", 404), (f"{C}/d/dir\\b.bin", 400),
                         (f"{C}/d/a.txt\x00", 400), (f"{C}/d/\nx", 400)]:
        start = call(app, path)[0]
        assert start["status"] == status, path
    assert call(app, f"{C}/d/a.txt")[0]["status"] == 200


def test_zero_copy_extensions_are_used_when_offered(runtime, web):
    large = b"z" * (200 << 10)
    published(runtime, {"z.bin": large})
    app = web.app_instance
    path = str(runtime.storage.path(hashlib.sha256(large).hexdigest()))
    sent = call(app, f"{C}/d/z.bin", extensions={"http.response.pathsend": {}})
    assert sent[1] == {"type": "http.response.pathsend", "path": path}
    sent = call(app, f"{C}/d/z.bin", headers=[("range", "bytes=10-19")],
                extensions={"http.response.zerocopysend": {}})
    assert sent[0]["status"] == 206
    assert (sent[1]["type"], sent[1]["offset"], sent[1]["count"]) == (
        "http.response.zerocopysend", 10, 10)


def test_bytes_missing_from_the_store_are_an_error_not_a_crash(runtime, web):
    published(runtime)
    runtime.storage.delete(hashlib.sha256(FILES["dir/b.bin"]).hexdigest())
    response = web.get(f"{C}/d/dir/b.bin")
    assert response.status_code == 500 and b"missing" in response.content


# -- listings ---------------------------------------------------------------------------------

def test_listings_show_folders_files_and_metadata_escaped(runtime, web):
    odd = {'q"<b>&x.txt': b"1", "with space/#hash?.txt": b"22", "dir/f.txt": b"333",
           "dir/deep/g.txt": b"4444"}
    published(runtime, odd)
    top = web.get(f"{C}/d/")
    assert top.status_code == 200 and top.headers["content-type"] == "text/html; charset=utf-8"
    body = top.text
    assert "q&quot;&lt;b&gt;&amp;x.txt" in body and '<b>' not in body.replace("<body>", "")
    assert 'href="PULP_MANIFEST"' in body and 'href="dir/"' in body
    assert 'href="with%20space/"' in body and 'href="../"' in body
    assert "<script" not in body and "http" not in body  # nothing loaded from elsewhere
    for href, data in [("q%22%3Cb%3E%26x.txt", b"1"), ("with%20space/%23hash%3F.txt", b"22")]:
        assert web.get(urljoin(f"{C}/d/", href)).content == data
    sub = web.get(f"{C}/d/dir/").text
    assert 'href="f.txt"' in sub and 'href="deep/"' in sub and "g.txt" not in sub
    assert ">333<" not in sub and " 3\n" in sub  # sizes beside names
    redirect = web.get(f"{C}/d/dir")
    assert redirect.status_code == 301 and redirect.headers["location"] == f"{C}/d/dir/"
    assert web.get(f"{C}/d/nodir/").status_code == 404


def test_the_root_lists_visible_distributions_only(runtime, web):
    publication_id = published(runtime, base_path="public")
    distribute(runtime, "secret", hidden=True, publication_id=publication_id)
    distribute(runtime, "org/team/repo", publication_id=publication_id)
    root = web.get(f"{C}/").text
    assert 'href="public/"' in root and 'href="org/"' in root and "secret" not in root
    assert 'href="team/"' in web.get(f"{C}/org/").text
    assert web.get(f"{C}/org").headers["location"] == f"{C}/org/"
    assert web.get(f"{C}/org/team/repo/a.txt").content == FILES["a.txt"]
    assert web.get(f"{C}/secret/a.txt").content == FILES["a.txt"]  # hidden, still served


def test_a_long_listing_is_cut_and_says_so(runtime, web, monkeypatch):
    monkeypatch.setattr(content_module, "MAX_LISTING", 5)
    published(runtime, {f"f{i:02}.txt": b"x" for i in range(12)})
    body = web.get(f"{C}/d/").text
    assert body.count("<a href=") == 1 + 5 and "Only the first 5 entries" in body


def test_a_folder_listing_reads_one_folder_not_the_tree(runtime, web):
    """A skip-scan: sub-folders with many files cost one look-up each, not a row each."""
    make_repository(runtime)
    ids = []
    for folder in range(20):
        ids += bulk_file_units(runtime, 200, f"pool/p{folder:02}")
    with runtime.db.write() as session:  # bulk units have no files: one each, not stored
        for content in session.scalars(select(Content).where(Content.id.in_(ids))):
            session.add(ContentArtifact(content_id=content.id, size=1,
                                        relative_path=content.data["relative_path"],
                                        sha256=content.data["sha256"]))
    version_id = new_version(runtime, add=ids)
    distribute(runtime, "big", repository_version_id=version_id)
    web.get(f"{C}/")  # warm the generation check
    with counting_queries(runtime) as statements:
        pool = web.get(f"{C}/big/pool/").text
    assert [f'href="p{i:02}/"' in pool for i in range(20)] == [True] * 20
    assert len(statements) < 40  # 4000 files below, 20 folders listed
    with counting_queries(runtime) as statements:
        assert web.get(f"{C}/big/pool/p03/").text.count("<a href=") == 201
    assert len(statements) < 20


# -- caches -----------------------------------------------------------------------------------

def test_storms_of_requests_cost_a_handful_of_queries(make_runtime):
    runtime = make_runtime(content_cache_seconds=60)
    published(runtime)
    with serving(runtime) as web:
        web.get(f"{C}/")
        web.head(f"{C}/d/")  # the publication's path index is built once (its own test)
        deadline = time.monotonic() + 10
        while not len(web.app_instance.indexes) and time.monotonic() < deadline:
            web.get(f"{C}/")
            time.sleep(0.02)
        for url, status in [(f"{C}/d/missing/file.txt", 404), (f"{C}/d/a.txt", 200),
                            (f"{C}/nowhere/x", 404)]:
            with counting_queries(runtime) as first:
                assert web.get(url).status_code == status
            with counting_queries(runtime) as rest:
                for _ in range(199):
                    assert web.get(url).status_code == status
            assert len(first) <= 8 and rest == [], (url, first, rest)


def test_changes_from_other_processes_show_within_the_cache_time(make_runtime):
    runtime = make_runtime(content_cache_seconds=0.3)
    publication_id = published(runtime)
    other = make_runtime()  # another process: its commits do not reach this one's epoch
    with serving(runtime) as web:
        assert web.get(f"{C}/d/a.txt").status_code == 200
        with other.db.write() as session:
            session.scalar(select(Distribution).where(Distribution.base_path == "d")
                           ).base_path = "moved"
        time.sleep(0.4)
        assert web.get(f"{C}/d/a.txt").status_code == 404
        assert web.get(f"{C}/moved/a.txt").status_code == 200
    assert publication_id


# -- on demand --------------------------------------------------------------------------------

def remote_only_file(runtime, *, data: bytes = b"remote bytes", policy: str = "on_demand",
                     url: str = "http://127.0.0.1:9/remote/0", failed: bool = False,
                     base_path: str = "od", known_size: bool = True) -> int:
    """A unit at 'remote/0' whose bytes were never fetched, offered by a remote at `url`;
    distributed (its version) at `base_path`. Returns the content artifact's id."""
    sha256 = hashlib.sha256(data).hexdigest()
    make_repository(runtime)
    ids = bulk_file_units(runtime, 1, "remote")
    with runtime.db.write() as session:
        remote = Remote(name="up", type="file", url=url, policy=policy, max_retries=0)
        session.add(remote)
        content_artifact = ContentArtifact(content_id=ids[0], relative_path="remote/0",
                                           sha256=sha256,
                                           size=len(data) if known_size else None)
        session.add(content_artifact)
        session.flush()
        session.add(RemoteArtifact(content_artifact_id=content_artifact.id, remote_id=remote.id,
                                   url=url, sha256=sha256, size=len(data),
                                   failed_at=datetime.now(timezone.utc) if failed else None))
        content_artifact_id = content_artifact.id
    version_id = new_version(runtime, add=ids)
    distribute(runtime, base_path, repository_version_id=version_id)
    return content_artifact_id


def test_a_file_not_stored_answers_head_from_what_is_known(runtime, web):
    remote_only_file(runtime)
    response = web.head(f"{C}/od/remote/0")
    assert response.status_code == 200 and response.headers["content-length"] == "12"
    assert response.headers["etag"] == f'"{hashlib.sha256(b"remote bytes").hexdigest()}"'


def test_a_remote_file_in_its_cool_down_is_not_fetched(runtime, web):
    remote_only_file(runtime, failed=True)
    response = web.get(f"{C}/od/remote/0")
    assert response.status_code == 502 and b"failed verification" in response.content


def test_bytes_that_reached_the_store_are_served_from_it(runtime, web):
    remote_only_file(runtime, known_size=False)
    assert "content-length" not in web.head(f"{C}/od/remote/0").headers
    with runtime.storage.writer() as writer:
        writer.write(b"remote bytes")
        writer.commit()
    response = web.get(f"{C}/od/remote/0")
    assert response.content == b"remote bytes" and response.headers["content-length"] == "12"


# -- together with the API ----------------------------------------------------------------------

def test_the_server_app_routes_content_past_the_api(runtime):
    published(runtime)
    with TestClient(create_server_app(runtime)) as client:
        assert client.get("/api/v1/status").json()["database"] == runtime.db.dialect
        assert client.get(f"{C}/d/a.txt").content == FILES["a.txt"]
        assert client.get(f"{C}/").status_code == 200


# -- the HTTP rules alone -------------------------------------------------------------------------

def test_range_parsing():
    parse = http.parse_range
    assert parse(b"bytes=0-0", 10) == (0, 0)
    assert parse(b"bytes=-20", 10) == (0, 9)
    assert parse(b"Bytes = 2 - 4", 10) == (2, 4)
    assert parse(b"bytes=10-", 10) == http.UNSATISFIABLE
    assert parse(b"bytes=-0", 10) == http.UNSATISFIABLE
    assert parse(b"bytes=0-", 0) == http.UNSATISFIABLE
    for ignored in (b"bytes=", b"bytes=-", b"bytes=1-2,4-5", b"bytes=a-b", b"bytes=5-1",
                    b"bytes 1-2", "bytes=١-٢".encode()):
        assert parse(ignored, 10) is None, ignored


def test_content_types_never_announce_an_encoding():
    assert http.content_type("x.tar.gz") == b"application/gzip"
    assert http.content_type("Packages.xz") == b"application/x-xz"
    assert http.content_type("index.html") == b"text/html"
    assert http.content_type("PULP_MANIFEST") == b"application/octet-stream"
