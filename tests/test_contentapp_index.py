"""The content app's path index: distinct paths found in memory with no query, exactly as
the queries find them, fresh across publications, and compact."""

from __future__ import annotations

import hashlib
import time
import tracemalloc

from pallet.contentapp.index import BYTES_PER_FILE, PathIndex
from pallet.contentapp.lookup import RemoteOnly, StoredFile
from tests.test_contentapp import (C, add_files, counting_queries, distribute,  # noqa: F401
                                   make_repository, make_runtime, new_version, publish_latest,
                                   remote_only_file, serving)

MANY = {f"pool/{i % 7}/file-{i}.bin": f"bytes of file {i}\n".encode() for i in range(300)}


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def indexed(web, path: str) -> None:
    """Ask for `path` (its distribution and source become known), then wait for the index
    that asking started."""
    assert web.head(f"{C}/{path}").status_code in (200, 404)
    app = web.app_instance
    deadline = time.monotonic() + 10
    while not len(app.indexes) and time.monotonic() < deadline:
        time.sleep(0.02)
        web.get(f"{C}/")  # the build completes on the app's event loop
    assert len(app.indexes) == 1, "no index was built"


def test_the_index_finds_what_the_queries_find():
    a, b, c = sha(b"a"), sha(b"b"), sha(b"c")
    index = PathIndex([("x", a, 1, True, 11), ("x", b, 2, True, 12),  # content: the later
                       ("y", c, None, False, 13),  # bytes not stored: fetched by its id
                       ("x", c, 3, None, 0)])  # metadata, after content: wins
    assert index.find("x") == StoredFile(c, 3, metadata=True)
    assert index.find("y") == RemoteOnly(13, c, None)
    assert index.find("z") is None and index.find("") is None and index.find("x/") is None
    assert len(index) == 4


def test_distinct_paths_cost_no_query_once_the_index_is_built(make_runtime):
    runtime = make_runtime(content_cache_seconds=600)
    make_repository(runtime)
    new_version(runtime, add=add_files(runtime, MANY).values())
    distribute(runtime, "d", publication_id=publish_latest(runtime))
    with serving(runtime) as web:
        indexed(web, "d/PULP_MANIFEST")
        with counting_queries(runtime) as statements:
            for path, data in MANY.items():
                response = web.get(f"{C}/d/{path}")
                assert response.status_code == 200 and response.content == data
                assert response.headers["etag"] == f'"{sha(data)}"'
            manifest = web.get(f"{C}/d/PULP_MANIFEST")
        assert statements == []
        assert manifest.status_code == 200 and len(manifest.content.splitlines()) == len(MANY)
        # What the index does not hold is left to the queries: folders, missing paths.
        assert web.get(f"{C}/d/pool", follow_redirects=False).status_code == 301
        assert web.get(f"{C}/d/pool/").status_code == 200
        assert web.get(f"{C}/d/pool/9/none.bin").status_code == 404


def test_a_new_publication_is_served_at_once_through_its_own_index(make_runtime):
    runtime = make_runtime(content_cache_seconds=600)
    make_repository(runtime)
    first = add_files(runtime, {"same/path.txt": b"first\n"})
    new_version(runtime, add=first.values())
    publish_latest(runtime)
    distribute(runtime, "d", repository="r")
    with serving(runtime) as web:
        indexed(web, "d/same/path.txt")
        assert web.get(f"{C}/d/same/path.txt").content == b"first\n"
        second = add_files(runtime, {"same/path.txt": b"second\n"})
        new_version(runtime, add=second.values(), remove=first.values())
        publish_latest(runtime)
        assert web.get(f"{C}/d/same/path.txt").content == b"second\n"


def test_a_file_not_stored_is_fetched_through_the_index_too(make_runtime):
    runtime = make_runtime(content_cache_seconds=600)
    remote_only_file(runtime, known_size=False)
    with serving(runtime) as web:
        indexed(web, "od/elsewhere")
        with counting_queries(runtime) as statements:
            assert "content-length" not in web.head(f"{C}/od/remote/0").headers
        assert statements == []
        with runtime.storage.writer() as writer:
            writer.write(b"remote bytes")
            writer.commit()
        response = web.get(f"{C}/od/remote/0")
        assert response.content == b"remote bytes"
        assert response.headers["content-length"] == "12"


def test_an_index_costs_about_67_bytes_a_file():
    count = 100_000
    files = ((f"Packages/{i % 26:c}/package-{i}-1.0-1.x86_64.rpm", f"{i:064x}", 4096, True, i)
             for i in range(count))
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        index = PathIndex(files)
        held = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert len(index) == count
    assert held / count <= BYTES_PER_FILE + 10, f"{held / count:.0f} bytes a file"
    assert index.find("Packages/\x05/package-5-1.0-1.x86_64.rpm") == \
        StoredFile(f"{5:064x}", 4096, metadata=False)


def test_indexes_are_built_one_at_a_time(make_runtime):
    runtime = make_runtime(content_cache_seconds=600)
    make_repository(runtime)
    new_version(runtime, add=add_files(runtime, {"one.txt": b"one\n"}).values())
    distribute(runtime, "first", publication_id=publish_latest(runtime))
    new_version(runtime, add=add_files(runtime, {"two.txt": b"two\n"}).values())
    distribute(runtime, "second", publication_id=publish_latest(runtime))
    with serving(runtime) as web:
        app = web.app_instance
        building = []
        real = app._index_of

        def watched(session, source):
            building.append(len(app._indexing))
            return real(session, source)

        app._index_of = watched
        deadline = time.monotonic() + 10
        while len(app.indexes) < 2 and time.monotonic() < deadline:
            for path in ("first/one.txt", "second/two.txt", "first/x", "second/y"):
                web.head(f"{C}/{path}")
            time.sleep(0.02)
        assert len(app.indexes) == 2 and building == [1, 1]
        assert web.get(f"{C}/second/two.txt").content == b"two\n"


def test_a_source_larger_than_the_index_memory_is_built_once_then_served_by_queries(
        make_runtime):
    runtime = make_runtime(content_cache_seconds=600, content_index_bytes=100)
    make_repository(runtime)
    new_version(runtime, add=add_files(runtime, MANY).values())
    distribute(runtime, "d", publication_id=publish_latest(runtime))
    with serving(runtime) as web:
        app = web.app_instance
        builds = []
        real = app._index_of
        app._index_of = lambda session, source: builds.append(source) or real(session, source)
        for path, data in list(MANY.items())[:50]:
            assert web.get(f"{C}/d/{path}").content == data
            time.sleep(0.01)
        assert len(builds) == 1 and len(app.indexes) == 0
