"""What the content app serves changes, and it is told by the writes themselves
(distributions/serving.py): each change that alters what is served grows the generation once
and drops an in-process content app's caches at once; changes that serve nothing new do not;
and a write that calls nothing is noticed like one made through a service."""

from __future__ import annotations

import re
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import event, select, update
from starlette.testclient import TestClient

from pallet.artifacts.models import Artifact
from pallet.artifacts.service import record_artifact
from pallet.content.models import Content, ContentArtifact
from pallet.contentapp.app import ContentApp
from pallet.db.base import utcnow
from pallet.distributions import service as distributions
from pallet.distributions.models import Distribution, ServingGeneration
from pallet.distributions.serving import SERVED
from pallet.orphans import tasks as orphans
from pallet.publications import service as publications
from pallet.remotes import service as remotes
from pallet.remotes.fetch import mark_failed, record_fetched
from pallet.remotes.models import Remote, RemoteArtifact
from pallet.repositories import service as repositories
from pallet.repositories import versions
from pallet.runtime import Runtime
from tests.conftest import make_settings, wait_for_task
from tests.http_fixtures import write_repository
from tests.processes import bulk_file_units
from tests.test_contentapp import add_files

C = "/pallet/content"
SRC = Path(__file__).resolve().parents[1] / "src" / "pallet"


class FakeTask:
    result = None

    def progress(self, *_args) -> None:
        pass


@pytest.fixture
def runtime(tmp_path, database_url):
    # The generation is read once, at the first request: only the in-process epoch can drop
    # the caches during a test.
    (tmp_path / "allowed").mkdir()
    runtime = Runtime.create(make_settings(tmp_path, database_url, content_cache_seconds=3600,
                                           allowed_import_dirs=[tmp_path / "allowed"]))
    yield runtime
    runtime.close()


@pytest.fixture
def web(runtime):
    app = ContentApp(runtime)
    with TestClient(app, follow_redirects=False) as client:
        client.app_instance = app
        yield client


def generation(runtime) -> int:
    with runtime.db.read() as session:
        return session.scalar(select(ServingGeneration.generation))


def stored_unit(runtime, path: str, data: bytes) -> int:
    return add_files(runtime, {path: data})[path]


def new_version(runtime, name: str = "r", **change) -> int:
    with runtime.db.write() as session:
        repository = repositories.get_repository(session, name)
        return versions.create_version(session, runtime.plugins, repository, **change).number


def publish_latest(runtime, name: str = "r") -> int:
    with runtime.db.write() as session:
        repository = repositories.get_repository(session, name)
        publication, _ = publications.publish(session, runtime.plugins, runtime.storage,
                                              repository,
                                              versions.latest_version(session, repository))
        return publication.id


@pytest.fixture
def served(runtime, web):
    """Repository r, its version 1 holding a.txt published, served at d (the repository);
    a second unit b.txt in no version; remote 'up' offering a.txt on demand."""
    with runtime.db.write() as session:
        repositories.create_repository(session, runtime.plugins, name="r", type="file")
    ids = {"a": stored_unit(runtime, "a.txt", b"alpha\n"),
           "b": stored_unit(runtime, "b.txt", b"beta\n")}
    new_version(runtime, add=[ids["a"]])
    ids["publication"] = publish_latest(runtime)
    with runtime.db.write() as session:
        repository = repositories.get_repository(session, "r")
        distributions.create_distribution(
            session, name="d", base_path="d",
            target=distributions.Target(repository_id=repository.id))
        remote = remotes.create_remote(session, runtime.plugins, runtime.settings, name="up",
                                       url="http://127.0.0.1:9/", policy="on_demand")
        link = session.scalar(select(ContentArtifact)
                              .where(ContentArtifact.content_id == ids["a"]))
        session.add(RemoteArtifact(content_artifact_id=link.id, remote_id=remote.id,
                                   url="http://127.0.0.1:9/a.txt", sha256=link.sha256,
                                   size=link.size))
        ids["repository"] = repository.id
    assert web.get(f"{C}/d/a.txt").status_code == 200
    return ids


@contextmanager
def changes(runtime, web=None, *, bumps: int):
    """The block grows the generation and the epoch by `bumps`; with `web`, a content app
    that cached an answer before it drops its caches at the next request (or keeps them)."""
    if web is not None:
        assert web.get(f"{C}/d/a.txt").status_code in (200, 404)
        era = web.app_instance.cache.era
    start, epoch = generation(runtime), runtime.serving_epoch
    yield
    assert (generation(runtime) - start, runtime.serving_epoch - epoch) == (bumps, bumps)
    if web is not None:
        web.get(f"{C}/d/a.txt")
        # (A drop for the epoch, and one more when that request reads the grown generation.)
        assert (web.app_instance.cache.era > era) == (bumps > 0)


# -- changes that alter what is served: one bump each ---------------------------------------

def test_creating_updating_and_deleting_a_distribution(runtime, web, served):
    with changes(runtime, web, bumps=1):
        with runtime.db.write() as session:
            distributions.create_distribution(session, name="e", base_path="e")
    with changes(runtime, web, bumps=1):
        with runtime.db.write() as session:
            distributions.update_distribution(session,
                                              distributions.get_distribution(session, "d"),
                                              base_path="moved")
    assert web.get(f"{C}/d/a.txt").status_code == 404  # at once, not after the cache time
    assert web.get(f"{C}/moved/a.txt").status_code == 200
    with changes(runtime, web, bumps=1):
        with runtime.db.write() as session:
            distributions.delete_distribution(session,
                                              distributions.get_distribution(session, "d"))
    assert web.get(f"{C}/moved/a.txt").status_code == 404


def test_publishing_and_deleting_a_publication(runtime, web, served):
    new_version(runtime, add=[served["b"]])
    assert web.get(f"{C}/d/b.txt").status_code == 404
    with changes(runtime, web, bumps=1):
        publication_id = publish_latest(runtime)
    assert web.get(f"{C}/d/b.txt").status_code == 200
    with changes(runtime, web, bumps=1):
        with runtime.db.write() as session:
            publications.delete_publication(
                session, publications.get_publication(session, publication_id))
    assert web.get(f"{C}/d/b.txt").status_code == 404  # its grace period went with it


def test_a_new_version_with_its_autopublished_publication_is_one_change(runtime, web,
                                                                         served):
    with runtime.db.write() as session:
        repositories.update_repository(session, repositories.get_repository(session, "r"),
                                       autopublish=True, plugins=runtime.plugins)
    with changes(runtime, web, bumps=1):  # as a sync, an upload or a modify task does it
        with runtime.db.write() as session:
            repository = repositories.get_repository(session, "r")
            version = versions.create_version(session, runtime.plugins, repository,
                                              add=[served["b"]])
            assert publications.autopublish(session, runtime.plugins, runtime.storage,
                                            repository, version) is not None
    assert web.get(f"{C}/d/b.txt").status_code == 200


def test_deleting_a_version_and_a_repository(runtime, web, served):
    new_version(runtime, add=[served["b"]])
    with changes(runtime, web, bumps=1):
        with runtime.db.write() as session:
            versions.delete_version(session, repositories.get_repository(session, "r"), 1)
    assert web.get(f"{C}/d/a.txt").status_code == 404  # its publication went with it
    with changes(runtime, web, bumps=1):
        with runtime.db.write() as session:
            repositories.delete_repository(session, repositories.get_repository(session, "r"))


def test_changing_or_deleting_a_remote_used_on_demand(runtime, web, served):
    with changes(runtime, web, bumps=1):
        with runtime.db.write() as session:
            remote = session.scalar(select(Remote).where(Remote.name == "up"))
            remotes.update_remote(session, runtime.plugins, runtime.settings, remote,
                                  url="http://127.0.0.1:10/")
    with changes(runtime, web, bumps=1):
        with runtime.db.write() as session:
            remotes.delete_remote(session, session.scalar(select(Remote)))


def test_reclaiming_stored_bytes(runtime, web, served):
    """Version 1 is served (d serves r's publication of it): reclaim a repository whose old
    version holds a.txt as well, keeping r's newest."""
    with runtime.db.write() as session:
        repositories.create_repository(session, runtime.plugins, name="q", type="file")
    new_version(runtime, "q", add=[served["a"]])
    new_version(runtime, "q", remove_all=True)
    with runtime.db.write() as session:  # d now serves nothing that holds a.txt
        distributions.update_distribution(session, distributions.get_distribution(session, "d"),
                                          target=distributions.Target())
    new_version(runtime, "r", remove_all=True)
    with changes(runtime, web, bumps=1):
        task = FakeTask()
        with runtime.db.read() as session:
            ids = [repositories.get_repository(session, name).id for name in ("q", "r")]
        orphans.reclaim(runtime, task, repository_ids=ids)
    assert task.result["content_reclaimed"] == 1


def test_a_sync_is_one_change_when_its_version_lands_and_none_when_nothing_is_new(
        runtime, client, workers, tmp_path):
    tree = tmp_path / "allowed" / "tree"
    write_repository(tree, {f"f{i}.txt": f"file {i}\n".encode() for i in range(30)})
    for body, status in (({"name": "local", "url": tree.as_uri() + "/"}, 201),
                         ({"name": "repo", "autopublish": True}, 201)):
        kind = "remotes" if "url" in body else "repositories"
        assert client.post(f"/api/v1/{kind}", json=body).status_code == status
    for bumps, version in ((1, 1), (0, None)):
        with changes(runtime, bumps=bumps):
            response = client.post("/api/v1/repositories/repo/sync", json={"remote": "local"})
            task = wait_for_task(client, response.json()["href"])
        assert task["state"] == "completed", task["error"]
        assert task["result"]["version"] == version


# -- changes that serve nothing new: no bump --------------------------------------------------

def test_orphan_cleanup_serves_nothing_new(runtime, web, served):
    bulk_file_units(runtime, 3, "orphan")
    with runtime.db.write() as session:
        record_artifact(session, sha256="f" * 64, size=1)
    old = utcnow() - timedelta(hours=2)
    with changes(runtime, web, bumps=0):
        with runtime.db.write() as session:
            session.execute(update(Content).where(Content.id != served["a"])
                            .values(created_at=old))
            session.execute(update(Artifact).values(created_at=old))
        task = FakeTask()
        orphans.cleanup(runtime, task, protection_seconds=60)
    assert task.result["content_deleted"] == 4 and task.result["artifacts_deleted"] >= 2
    assert web.get(f"{C}/d/a.txt").status_code == 200


def test_what_a_sync_records_before_its_version_serves_nothing_new(runtime, web, served):
    with changes(runtime, web, bumps=0):
        ids = bulk_file_units(runtime, 50, "synced")  # session.execute(insert(Content), ...)
        with runtime.db.write() as session:
            remote = session.scalar(select(Remote))
            for i, content_id in enumerate(ids[:5]):
                link = ContentArtifact(content_id=content_id, relative_path=f"synced/{i}",
                                       sha256=f"{i:064x}", size=1)
                session.add(link)
                session.flush()
                session.add(RemoteArtifact(content_artifact_id=link.id, remote_id=remote.id,
                                           url=f"http://127.0.0.1:9/{i}", sha256=link.sha256,
                                           size=1))
            session.flush()
            mark_failed(session, session.scalar(select(RemoteArtifact.id)))
            record_fetched(session, f"{0:064x}", 1)  # bytes arriving for a link
            repository = repositories.get_repository(session, "r")
            repositories.update_repository(session, repository, description="now described")
            remotes.update_remote(session, runtime.plugins, runtime.settings, remote,
                                  mirror=True)
            repositories.create_repository(session, runtime.plugins, name="new", type="file")
    with changes(runtime, bumps=0):  # a refused change leaves nothing behind
        with pytest.raises(Exception):
            with runtime.db.write() as session:
                distributions.create_distribution(session, name="x", base_path="d/x")


# -- writes that call nothing -----------------------------------------------------------------

def test_a_row_added_directly_is_noticed(runtime, web, served):
    with changes(runtime, web, bumps=1):
        with runtime.db.write() as session:
            session.add(Distribution(name="direct", base_path="direct",
                                     repository_id=served["repository"]))
    assert web.get(f"{C}/direct/a.txt").status_code == 200
    with changes(runtime, web, bumps=1):
        with runtime.db.write() as session:
            session.execute(update(Distribution).where(Distribution.name == "direct")
                            .values(base_path="elsewhere"))
    assert web.get(f"{C}/direct/a.txt").status_code == 404
    with changes(runtime, web, bumps=1):  # bytes unlinked in bulk, as reclaim does
        with runtime.db.write() as session:
            session.execute(update(ContentArtifact)
                            .where(ContentArtifact.content_id == served["a"])
                            .values(artifact_id=None))


def test_one_update_of_the_generation_per_transaction(runtime, served):
    statements = []

    def seen(_conn, _cursor, statement, *_args) -> None:
        if re.match(r"\s*UPDATE serving_generation", statement):
            statements.append(statement)

    event.listen(runtime.db.engine, "before_cursor_execute", seen)
    try:
        with changes(runtime, bumps=1):
            with runtime.db.write() as session:
                for i in range(3):
                    distributions.create_distribution(session, name=f"n{i}",
                                                      base_path=f"n{i}")
                    session.flush()
                session.execute(update(Distribution).values(hidden=True))
                publications.delete_publication(
                    session, publications.get_publication(session, served["publication"]))
    finally:
        event.remove(runtime.db.engine, "before_cursor_execute", seen)
    assert len(statements) == 1


def test_a_rolled_back_change_is_no_change_and_a_savepoint_takes_its_bump_back(runtime,
                                                                               served):
    with changes(runtime, bumps=0):
        with pytest.raises(RuntimeError):
            with runtime.db.write() as session:
                session.add(Distribution(name="gone", base_path="gone"))
                session.flush()
                raise RuntimeError
    with changes(runtime, bumps=1):
        with runtime.db.write() as session:
            with pytest.raises(RuntimeError):
                with session.begin_nested():
                    session.add(Distribution(name="undone", base_path="undone"))
                    session.flush()
                    raise RuntimeError
            session.add(Distribution(name="kept", base_path="kept"))
    with runtime.db.read() as session:
        assert set(session.scalars(select(Distribution.name))) == {"d", "kept"}


def test_bulk_inserts_past_the_session_never_write_a_served_table():
    """`insert_values` goes to the driver, where no session event sees it: it may only
    write tables whose new rows serve nothing until a served row names them."""
    calls = []
    for path in SRC.rglob("*.py"):
        for match in re.finditer(r"insert_values\(\s*session,\s*([\w.]+?)\.__table__",
                                 path.read_text()):
            calls.append(match.group(1))
    inserting = {table for table, rule in SERVED.items() if rule.insert}
    aliases = {"RC": "repository_content", "CA": "content_artifact",
               "RA": "remote_artifact", "Artifact": "artifact", "Content": "content",
               "ContentReference": "content_reference"}
    assert calls and all(name in aliases for name in calls), calls
    assert not {aliases[name] for name in calls} & inserting
    total = sum(path.read_text().count("insert_values(") for path in SRC.rglob("*.py"))
    assert total == len(calls) + 1  # and its definition
