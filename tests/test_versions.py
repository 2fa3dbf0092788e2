"""Repository versions on a real database: ranges, counts, digests, diffs, deletes, retention."""

import pytest
from sqlalchemy import select

from pallet.errors import Conflict, Invalid, NotFound
from pallet.repositories import service, versions
from pallet.repositories.contentset import EMPTY_DIGEST
from pallet.repositories.models import RepositoryContent
from tests.factories import make_files


@pytest.fixture
def repo(runtime):
    with runtime.db.write() as session:
        return service.create_repository(session, runtime.plugins, name="r", type="file")


def modify(runtime, repo, **changes):
    with runtime.db.write() as session:
        repository = service.get_repository(session, repo.name)
        version = versions.create_version(session, runtime.plugins, repository, **changes)
        return None if version is None else version.number


def present(runtime, repo, number):
    with runtime.db.read() as session:
        return set(session.scalars(versions.content_ids_query(repo, number)))


def version(runtime, repo, number):
    with runtime.db.read() as session:
        return versions.get_version(session, repo, number)


def recomputed(runtime, repo, number):
    with runtime.db.read() as session:
        return versions.recompute_digest(session, repo, number)


def test_new_repository_has_empty_version_zero(runtime, repo):
    v0 = version(runtime, repo, 0)
    assert v0.digest == EMPTY_DIGEST and v0.counts == {}
    assert present(runtime, repo, 0) == set()


def test_versions_hold_their_sets_with_counts_and_digests(runtime, repo):
    ids = make_files(runtime, 10)
    assert modify(runtime, repo, add=ids[:6]) == 1
    assert modify(runtime, repo, add=ids[6:], remove=ids[:2]) == 2
    assert present(runtime, repo, 1) == set(ids[:6])
    assert present(runtime, repo, 2) == set(ids[2:])
    v2 = version(runtime, repo, 2)
    assert v2.counts == {"file": {"added": 4, "removed": 2, "present": 8}}
    for number in (0, 1, 2):
        assert version(runtime, repo, number).digest == recomputed(runtime, repo, number)


def test_no_change_makes_no_version(runtime, repo):
    ids = make_files(runtime, 3)
    modify(runtime, repo, add=ids)
    assert modify(runtime, repo, add=ids[:2]) is None
    assert modify(runtime, repo, remove=make_files(runtime, 1, "other")) is None
    assert modify(runtime, repo, add=[ids[0]], remove=[ids[0]]) is None


def test_same_set_same_digest_across_repositories(runtime, repo):
    ids = make_files(runtime, 8)
    with runtime.db.write() as session:
        other = service.create_repository(session, runtime.plugins, name="other", type="file")
    modify(runtime, repo, add=ids[:3])
    modify(runtime, repo, add=ids[3:])
    modify(runtime, other, add=list(reversed(ids)))
    assert version(runtime, repo, 2).digest == version(runtime, other, 1).digest
    modify(runtime, other, remove=ids[:1])
    assert version(runtime, other, 2).digest != version(runtime, repo, 2).digest


def test_modify_from_a_base_version(runtime, repo):
    ids = make_files(runtime, 6)
    modify(runtime, repo, add=ids[:3])            # 1: 0,1,2
    modify(runtime, repo, add=ids[3:], remove=ids[:1])  # 2: 1..5
    assert modify(runtime, repo, base_version=1, add=[ids[5]], remove=[ids[1]]) == 3
    assert present(runtime, repo, 3) == {ids[0], ids[2], ids[5]}
    assert version(runtime, repo, 3).digest == recomputed(runtime, repo, 3)
    assert modify(runtime, repo, base_version=0, add=[ids[4]]) == 4
    assert present(runtime, repo, 4) == {ids[4]}


def test_remove_all_then_add(runtime, repo):
    ids = make_files(runtime, 5)
    modify(runtime, repo, add=ids[:4])
    assert modify(runtime, repo, remove_all=True, add=[ids[0], ids[4]]) == 2
    assert present(runtime, repo, 2) == {ids[0], ids[4]}
    assert version(runtime, repo, 2).counts == {"file": {"added": 1, "removed": 3, "present": 2}}
    assert version(runtime, repo, 2).digest == recomputed(runtime, repo, 2)
    assert modify(runtime, repo, remove_all=True, add=[ids[0], ids[4]]) is None
    assert modify(runtime, repo, remove_all=True) == 3
    assert version(runtime, repo, 3).digest == EMPTY_DIGEST


def test_diff_between_any_two_versions(runtime, repo):
    ids = make_files(runtime, 6)
    modify(runtime, repo, add=ids[:3])                 # 1: 0 1 2
    modify(runtime, repo, remove=ids[:1], add=ids[3:4])  # 2: 1 2 3
    modify(runtime, repo, add=ids[:1], remove=ids[1:2])  # 3: 0 2 3 (0 is back)
    with runtime.db.read() as session:
        def ids_of(old, new):
            added, removed = versions.diff_queries(repo, old, new)
            return set(session.scalars(added)), set(session.scalars(removed))
        assert ids_of(1, 3) == ({ids[3]}, {ids[1]})      # 0 left and came back: no change
        assert ids_of(3, 1) == ({ids[1]}, {ids[3]})
        assert ids_of(0, 2) == ({ids[1], ids[2], ids[3]}, set())
        assert ids_of(2, 2) == (set(), set())
        assert versions.diff_counts(session, repo, 1, 3) == {"file": {"added": 1, "removed": 1}}


def test_delete_a_middle_version_folds_into_the_next(runtime, repo):
    ids = make_files(runtime, 6)
    modify(runtime, repo, add=ids[:3])                   # 1: 0 1 2
    modify(runtime, repo, add=ids[3:5], remove=ids[:1])  # 2: 1 2 3 4
    modify(runtime, repo, add=ids[:1], remove=ids[3:4])  # 3: 0 1 2 4
    before = {n: (present(runtime, repo, n), version(runtime, repo, n).digest) for n in (1, 3)}
    with runtime.db.write() as session:
        versions.delete_version(session, repo, 2)
    for number, (content, digest) in before.items():
        assert present(runtime, repo, number) == content
        assert version(runtime, repo, number).digest == digest == recomputed(runtime, repo, number)
    # Version 3 now records its changes against version 1: only id 4 was added.
    assert version(runtime, repo, 3).counts == {"file": {"added": 1, "removed": 0, "present": 4}}
    with runtime.db.read() as session:
        # The unit removed in 2 and re-added in 3 is one unbroken range again.
        rows = session.scalars(select(RepositoryContent).where(
            RepositoryContent.content_id == ids[0])).all()
        assert [(r.version_added, r.version_removed) for r in rows] == [(1, None)]
        with pytest.raises(NotFound):
            versions.get_version(session, repo, 2)


def test_delete_the_newest_version_restores_the_previous(runtime, repo):
    ids = make_files(runtime, 4)
    modify(runtime, repo, add=ids[:2])
    modify(runtime, repo, add=ids[2:], remove=ids[:1])
    with runtime.db.write() as session:
        versions.delete_version(session, repo, 2)
    assert present(runtime, repo, 1) == set(ids[:2])
    # The next version continues from 1 and takes a new number: numbers are never reused.
    assert modify(runtime, repo, add=ids[3:]) == 3
    assert present(runtime, repo, 3) == {ids[0], ids[1], ids[3]}


def test_the_only_version_cannot_be_deleted(runtime, repo):
    with runtime.db.write() as session, pytest.raises(Conflict):
        versions.delete_version(session, repo, 0)


def test_retention_keeps_the_newest_versions(runtime, repo):
    ids = make_files(runtime, 5)
    with runtime.db.write() as session:
        service.update_repository(session, service.get_repository(session, "r"),
                                  retain_versions=2)
    for i in range(5):
        modify(runtime, repo, add=[ids[i]])
    with runtime.db.read() as session:
        count, kept = versions.list_versions(session, repo)
    assert [v.number for v in kept] == [5, 4]
    assert present(runtime, repo, 4) == set(ids[:4])
    assert version(runtime, repo, 4).counts["file"]["present"] == 4
    assert version(runtime, repo, 5).digest == recomputed(runtime, repo, 5)


def test_content_must_exist_and_fit_the_repository_type(runtime, repo):
    with pytest.raises(Invalid, match="do not exist"):
        modify(runtime, repo, add=[424242])


def test_repository_names_and_conflicts(runtime):
    with runtime.db.write() as session:
        service.create_repository(session, runtime.plugins, name="a.b-c_1", type="file")
    for bad in ("", "-x", "a/b", "a b", "x" * 256, "../x"):
        with runtime.db.write() as session, pytest.raises(Invalid):
            service.create_repository(session, runtime.plugins, name=bad, type="file")
    with runtime.db.write() as session, pytest.raises(Conflict):
        service.create_repository(session, runtime.plugins, name="a.b-c_1", type="file")
    with runtime.db.write() as session, pytest.raises(Invalid, match="unknown repository type"):
        service.create_repository(session, runtime.plugins, name="z", type="deb")
