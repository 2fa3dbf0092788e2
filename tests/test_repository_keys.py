"""One unit per repository key in a version (a file's relative path): adding a unit whose key
is present replaces the unit that has it, whatever adds it; the database backs the rule; and
versions made before the rule keep their digest, are reported, and resolve in the next one."""

import hashlib

import pytest
from sqlalchemy import insert, select
from sqlalchemy.exc import IntegrityError

from pallet.content.models import Content
from pallet.content.service import create_content
from pallet.db import Database
from pallet.db.migrate import upgrade
from pallet.plugins import load_plugins
from pallet.repositories import service, versions
from pallet.repositories.contentset import LtHash, digest_of, key_losers
from pallet.repositories.models import RepositoryContent, RepositoryVersion
from tests.conftest import empty_database, wait_for_task
from tests.factories import file_unit, store_bytes

API = "/api/v1"


@pytest.fixture
def repo(runtime):
    with runtime.db.write() as session:
        return service.create_repository(session, runtime.plugins, name="web", type="file")


def modify(runtime, **changes):
    with runtime.db.write() as session:
        repository = service.get_repository(session, "web")
        made = versions.create_version(session, runtime.plugins, repository, **changes)
        return None if made is None else (made.number, made.digest, made.counts)


def present(runtime, number):
    with runtime.db.read() as session:
        repository = service.get_repository(session, "web")
        return set(session.scalars(versions.content_ids_query(repository, number)))


def identities(runtime, ids):
    from pallet.content.models import Content
    with runtime.db.read() as session:
        return list(session.scalars(select(Content.digest).where(Content.id.in_(ids))))


# -- the pure rule ---------------------------------------------------------------------------

def test_the_highest_rank_of_each_key_stays():
    assert key_losers([("a", (0, 1, 1), 1), ("a", (1, 0, 2), 2), ("b", (0, 3, 3), 3),
                       ("a", (0, 5, 4), 4)]) == {1, 4}
    assert key_losers([]) == set()


# -- every way of making a version -----------------------------------------------------------

def test_an_added_unit_replaces_the_one_at_its_path(runtime, repo):
    old = file_unit(runtime, "notes.txt", b"old notes")
    other = file_unit(runtime, "page.html", b"<p>")
    new = file_unit(runtime, "notes.txt", b"new notes")
    modify(runtime, add=[old, other])
    number, digest, counts = modify(runtime, add=[new])
    assert present(runtime, number) == {new, other}
    assert counts == {"file": {"added": 1, "removed": 1, "present": 2}}
    assert digest == digest_of(identities(runtime, [new, other]))


def test_of_two_added_units_at_one_path_the_newest_enters(runtime, repo):
    first = file_unit(runtime, "a.txt", b"1")
    second = file_unit(runtime, "a.txt", b"2")
    number, _, counts = modify(runtime, add=[first, second])
    assert present(runtime, number) == {second}
    assert counts["file"]["present"] == 1


def test_replacing_everything_keeps_one_unit_per_path(runtime, repo):
    old = file_unit(runtime, "a.txt", b"old")
    keep = file_unit(runtime, "b.txt", b"b")
    modify(runtime, add=[old, keep])
    newer, newest = file_unit(runtime, "a.txt", b"newer"), file_unit(runtime, "a.txt", b"newest")
    number, digest, _ = modify(runtime, add=[keep, newer, newest], remove_all=True)
    assert present(runtime, number) == {keep, newest}
    assert digest == digest_of(identities(runtime, [keep, newest]))


def test_restoring_a_base_version_brings_its_unit_back_in_place(runtime, repo):
    old = file_unit(runtime, "a.txt", b"old")
    new = file_unit(runtime, "a.txt", b"new")
    modify(runtime, add=[old])
    modify(runtime, add=[new])
    number, digest, _ = modify(runtime, base_version=1)
    assert present(runtime, number) == {old}
    assert digest == digest_of(identities(runtime, [old]))


def test_deleting_versions_keeps_one_unit_per_path(runtime, repo):
    old, new = file_unit(runtime, "a.txt", b"old"), file_unit(runtime, "a.txt", b"new")
    modify(runtime, add=[old])      # 1
    modify(runtime, add=[new])      # 2: new replaces old
    modify(runtime, add=[old])      # 3: old back in place
    with runtime.db.write() as session:
        repository = service.get_repository(session, "web")
        versions.delete_version(session, repository, 2)  # folds old's two ranges into one
        versions.delete_version(session, repository, 3)  # the newest: version 1's set again
    assert present(runtime, 1) == {old}


def test_removing_a_unit_that_does_not_exist_is_an_error(runtime, repo):
    from pallet.errors import Invalid
    with pytest.raises(Invalid, match="do not exist"):
        modify(runtime, remove=[424242])


def test_the_database_refuses_a_second_unit_at_one_path(runtime, repo):
    one, two = file_unit(runtime, "a.txt", b"1"), file_unit(runtime, "a.txt", b"2")
    modify(runtime, add=[one])
    with runtime.db.read() as session:
        key = session.scalar(select(RepositoryContent.repository_key))
    with pytest.raises(IntegrityError):
        with runtime.db.write() as session:
            session.execute(insert(RepositoryContent).values(
                repository_id=repo.id, content_id=two, version_added=1, repository_key=key))


def test_an_upload_to_a_taken_path_replaces_it_in_the_published_manifest(client, runtime,
                                                                         workers):
    client.post(f"{API}/repositories", json={"name": "site", "autopublish": True})
    for data in (b"first notes", b"<html>page</html>"):
        sha256 = store_bytes(runtime, data)
        unit = client.post(f"{API}/content/file",
                           json={"relative_path": "notes.txt", "sha256": sha256}).json()
        task = wait_for_task(client, client.post(f"{API}/repositories/site/modify",
                                                 json={"add_content": [unit["id"]]}
                                                 ).json()["href"])
        assert task["state"] == "completed", task
    version = client.get(f"{API}/repositories/site/versions/2").json()
    assert version["counts"]["file"] == {"added": 1, "removed": 1, "present": 1}
    publication = client.get(f"{API}/publications/{task['result']['publication']}").json()
    (manifest,) = publication["metadata_files"]
    with runtime.storage.open(manifest["sha256"]) as stream:
        lines = stream.read().decode().splitlines()
    page = hashlib.sha256(b"<html>page</html>").hexdigest()
    assert lines == [f"notes.txt,{page},17"]


# -- versions made before the rule -----------------------------------------------------------

@pytest.fixture
def empty_database_url(tmp_path):
    yield from empty_database(tmp_path, "keys")


def test_versions_with_two_units_at_one_path_from_before_keep_their_digest(
        empty_database_url, tmp_path):
    """A database of revision 0004 whose version 1 holds two units at notes.txt, as the old
    code made them, migrated to the newest revision."""
    from pallet.artifacts.storage import LocalStorage

    db = Database(empty_database_url)
    upgrade(db, "0004")
    plugins = load_plugins()
    storage = LocalStorage(tmp_path / "artifacts")
    units = []
    with db.write() as session:
        repository = service.create_repository(session, plugins, name="web", type="file")
        for path, data in (("notes.txt", b"old"), ("notes.txt", b"new"), ("x.txt", b"x")):
            units.append(_old_unit(session, plugins, storage, path, data))
        rows = [(units[0], 1, None), (units[1], 1, None), (units[2], 1, None)]
        session.execute(insert(RepositoryContent.__table__).values(
            [dict(repository_id=repository.id, content_id=u, version_added=a,
                  version_removed=r) for u, a, r in rows]))
        digests = [_digest(session, u) for u in units]
        lthash = LtHash().add(digests)
        session.execute(insert(RepositoryVersion.__table__).values(
            repository_id=repository.id, number=1, counts={}, lthash=lthash.state,
            digest=lthash.digest, created_at=__import__("datetime").datetime.now()))
        repository.next_version = 2
    upgrade(db)

    with db.write() as session:
        repository = service.get_repository(session, "web")
        assert versions.latest_version(session, repository).digest == digest_of(digests)
        assert versions.recompute_digest(session, repository, 1) == digest_of(digests)
        assert versions.duplicate_keys(session, plugins, repository, 1) == [
            {"key": {"relative_path": "notes.txt"}, "units": [units[0], units[1]]}]
        other = _old_unit(session, plugins, storage, "y.txt", b"y")
        made = versions.create_version(session, plugins, repository, add=[other])
        held = set(session.scalars(versions.content_ids_query(repository, made.number)))
    assert held == {units[1], units[2], other}  # the newest unit at notes.txt stays
    with db.write() as session:
        repository = service.get_repository(session, "web")
        assert versions.duplicate_keys(session, plugins, repository, made.number) == []
        versions.delete_version(session, repository, made.number)  # back to the old set
        assert set(session.scalars(versions.content_ids_query(repository, 1))) == set(units)
    db.dispose()


def _old_unit(session, plugins, storage, path: str, data: bytes) -> int:
    from pallet.artifacts.service import record_artifact
    with storage.writer() as writer:
        writer.write(data)
        sha256 = writer.commit()
    record_artifact(session, sha256=sha256, size=len(data))
    content, _ = create_content(session, plugins, type="file",
                                fields={"relative_path": path, "sha256": sha256})
    session.flush()
    return content.id


def _digest(session, content_id: int) -> str:
    from pallet.content.models import Content
    return session.get(Content, content_id).digest


def test_keys_read_from_the_database_equal_keys_of_whole_units(runtime):
    """repository_keys reads only the key's fields out of the units' JSON; the digests must be
    those of the whole units' fields (which rows from before keys were enforced get)."""
    from pallet.repositories.versions import _key_of, repository_keys
    ids = [file_unit(runtime, 'a,b "q".txt', b"x"), file_unit(runtime, "ü/z{}.txt", b"y")]
    with runtime.db.read() as session:
        read = repository_keys(session, runtime.plugins, ids)
        whole = {unit: _key_of(runtime.plugins, type_, digest, data) for unit, type_, digest, data
                 in session.execute(select(Content.id, Content.type, Content.digest,
                                           Content.data))}
    assert read == whole and len(set(read.values())) == 2

