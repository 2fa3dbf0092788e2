"""Orphan cleanup and reclaiming space. Functions over an explicit session; they flush, never
commit.

Cleanup deletes content in no repository version and artifacts that nothing references (no
content artifact, no publication's metadata file), both only when older than a protection
window (DESIGN.md invariant 3). Reclaim drops the stored bytes of content that only old
versions hold and that a remote can deliver again: the units, their links and remote
artifacts stay, as if the content had been synced on demand.

Callers find candidates in read transactions and hand each batch of ids to a short write
transaction, where the rows are locked and every condition is checked again, so a row that
became referenced meanwhile is kept. On PostgreSQL the lock is `FOR UPDATE SKIP LOCKED`: a row
that another transaction is referencing right now (its foreign-key check holds a key-share
lock on the row) is skipped, never waited for, and a reference attempted after the lock waits
for our commit and then fails its foreign-key check instead of pointing at nothing. SQLite has
one writer at a time, so there the re-check alone is exact. Files are deleted only once the
rows' deletion is committed (`delete_files`).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

from sqlalchemy import and_, delete, exists, func, or_, select, update
from sqlalchemy.orm import Session, aliased

from pallet.artifacts.models import Artifact
from pallet.artifacts.storage import ArtifactStorage
from pallet.content.models import Content, ContentArtifact
from pallet.db.bulk import SQLITE_BATCH, among, batched, id_batches
from pallet.distributions.models import Distribution
from pallet.publications.models import Publication, PublishedMetadata
from pallet.remotes.models import RemoteArtifact
from pallet.repositories.models import RepositoryContent, RepositoryVersion
from pallet.repositories.versions import present_at

# Cleanup holds it exclusively; whatever stores artifacts before referencing them (sync,
# upload commit) holds it shared, so an artifact is never deleted between the two steps.
LOCK = "orphans"

# Superseded publications looked at per repository distribution: more than the content app
# ever serves during their grace period.
GRACE_PUBLICATIONS = 100

CA, RC, PM, RA = ContentArtifact, RepositoryContent, PublishedMetadata, RemoteArtifact
QUIET = {"synchronize_session": False}


@dataclass(frozen=True)
class Doomed:
    """An artifact whose row is deleted; its file goes once that is committed."""

    sha256: str
    size: int


def cutoff(now: datetime, protection_seconds: float) -> datetime:
    """Rows created before this are old enough to be deleted. A protection reaching back
    before year 1 (datetime's first) keeps everything: nothing was created before then."""
    earliest = datetime.min.replace(tzinfo=now.tzinfo)
    if protection_seconds >= (now - earliest).total_seconds():
        return earliest
    return now - timedelta(seconds=protection_seconds)


def _lock(session: Session, model, ids: list[int]) -> list[int]:
    """The ids among `ids` whose rows exist and are now locked by this transaction; rows
    another transaction holds are left out (PostgreSQL). SQLite ignores the clause: its write
    transaction already excludes every other writer."""
    return list(session.scalars(select(model.id).where(among(session, model.id, ids))
                                .order_by(model.id).with_for_update(skip_locked=True)))


# -- cleanup: content -----------------------------------------------------------------------

def _orphan_content(before: datetime):
    return and_(Content.created_at < before, ~exists().where(RC.content_id == Content.id))


def count_orphan_content(session: Session, *, before: datetime) -> int:
    return session.scalar(select(func.count()).select_from(Content)
                          .where(_orphan_content(before)))


def find_orphan_content(session: Session, *, before: datetime, after: int,
                        limit: int) -> list[int]:
    """The next `limit` ids above `after` of content in no version, created before `before`."""
    return list(session.scalars(select(Content.id)
                                .where(Content.id > after, _orphan_content(before))
                                .order_by(Content.id).limit(limit)))


def delete_content(session: Session, ids: list[int], *, before: datetime) -> int:
    """Delete those of `ids` still in no version (their links and remote artifacts go with
    them, by cascade); return how many went. The artifacts stay for `delete_artifacts`."""
    locked = _lock(session, Content, ids)
    if not locked:
        return 0
    result = session.execute(delete(Content).where(among(session, Content.id, locked),
                                                   _orphan_content(before))
                             .execution_options(**QUIET))
    return result.rowcount or 0


# -- cleanup: artifacts ---------------------------------------------------------------------

def _unreferenced():
    return and_(~exists().where(CA.artifact_id == Artifact.id),
                ~exists().where(PM.artifact_id == Artifact.id))


def count_orphan_artifacts(session: Session, *, before: datetime) -> int:
    return session.scalar(select(func.count()).select_from(Artifact)
                          .where(Artifact.created_at < before, _unreferenced()))


def find_orphan_artifacts(session: Session, *, before: datetime, after: int,
                          limit: int) -> list[int]:
    return list(session.scalars(select(Artifact.id)
                                .where(Artifact.id > after, Artifact.created_at < before,
                                       _unreferenced())
                                .order_by(Artifact.id).limit(limit)))


def delete_artifacts(session: Session, ids: list[int], *,
                     before: datetime | None = None) -> list[Doomed]:
    """Delete the rows of those of `ids` that nothing references (and, with `before`, that
    were created before it); return what they held, for `delete_files` after the commit."""
    doomed: list[Doomed] = []
    for batch in id_batches(session, ids):
        locked = _lock(session, Artifact, batch)
        if not locked:
            continue
        where = [among(session, Artifact.id, locked), _unreferenced()]
        if before is not None:
            where.append(Artifact.created_at < before)
        rows = session.execute(select(Artifact.id, Artifact.sha256, Artifact.size)
                               .where(*where)).all()
        if rows:
            session.execute(delete(Artifact)
                            .where(among(session, Artifact.id, [row.id for row in rows]))
                            .execution_options(**QUIET))
            doomed.extend(Doomed(row.sha256, row.size) for row in rows)
    return doomed


def delete_files(session: Session, storage: ArtifactStorage, doomed: list[Doomed]) -> int:
    """Delete the stored files of artifacts whose rows are gone, unless a row for the same
    digest was recorded again since; return the bytes freed. Run it in a write transaction
    after the deletion committed: on SQLite that holds the one write lock, so a writer that
    checks for the file and records its row in one write transaction (publishing) cannot
    slip in between the check here and the unlink."""
    freed = 0
    for batch in batched(doomed, SQLITE_BATCH):
        recorded = set(session.scalars(select(Artifact.sha256).where(
            Artifact.sha256.in_([item.sha256 for item in batch]))))
        for item in batch:
            if item.sha256 not in recorded and storage.exists(item.sha256):
                storage.delete(item.sha256)
                freed += item.size
    return freed


# -- reclaim --------------------------------------------------------------------------------

def _aware(value: datetime) -> datetime:
    return value.replace(tzinfo=timezone.utc) if value.tzinfo is None else value


def served_versions(session: Session, *, now: datetime, grace: float) -> set[tuple[int, int]]:
    """(repository id, version number) of every version a distribution serves: named
    directly, through a publication, or as a repository's newest version and the versions of
    its newest publication and of superseded ones still in their grace period."""
    rv = RepositoryVersion
    named = session.execute(
        select(rv.repository_id, rv.number)
        .join(Distribution, Distribution.repository_version_id == rv.id))
    published = session.execute(
        select(rv.repository_id, rv.number).join(Publication, Publication.version_id == rv.id)
        .join(Distribution, Distribution.publication_id == Publication.id))
    served = {(repository_id, number) for repository_id, number in [*named, *published]}
    repository_ids = list(session.scalars(select(Distribution.repository_id).distinct()
                                          .where(Distribution.repository_id.is_not(None))))
    for repository_id in repository_ids:
        newest = session.scalar(select(func.max(rv.number)).where(rv.repository_id
                                                                  == repository_id))
        if newest is not None:  # types without publications serve it bare
            served.add((repository_id, newest))
        newer_created = None
        rows = session.execute(select(Publication.created_at, rv.number)
                               .join(rv, rv.id == Publication.version_id)
                               .where(Publication.repository_id == repository_id)
                               .order_by(Publication.id.desc()).limit(GRACE_PUBLICATIONS))
        for created_at, number in rows:
            # The newest serves; an older one serves until its successor is `grace` old.
            if newer_created is not None and newer_created + timedelta(seconds=grace) <= now:
                break
            served.add((repository_id, number))
            newer_created = _aware(created_at)
    return served


def _reclaimable(content_id, *, repository_ids: list[int], keep_latest: bool,
                 served: set[tuple[int, int]]):
    """SQL condition on `content_id`: the unit is in no protected version and every one of
    its stored files can be fetched again from a remote."""
    rc, stored, unfetchable = aliased(RC), aliased(CA), aliased(CA)
    newest = rc.version_removed.is_(None)
    if not keep_latest:
        newest = and_(newest, rc.repository_id.not_in(repository_ids))
    protected = or_(newest, *(and_(rc.repository_id == repository_id, present_at(rc, number))
                              for repository_id, number in sorted(served)))
    return and_(
        ~exists().where(rc.content_id == content_id, protected),
        exists().where(stored.content_id == content_id, stored.artifact_id.is_not(None)),
        ~exists().where(unfetchable.content_id == content_id,
                        unfetchable.artifact_id.is_not(None),
                        ~exists().where(RA.content_artifact_id == unfetchable.id)))


def find_reclaimable(session: Session, *, repository_ids: list[int], keep_latest: bool,
                     served: set[tuple[int, int]], after: int, limit: int) -> list[int]:
    """The next `limit` ids above `after` of content in the repositories whose bytes could
    be dropped."""
    condition = _reclaimable(RC.content_id, repository_ids=repository_ids,
                             keep_latest=keep_latest, served=served)
    return list(session.scalars(
        select(RC.content_id).distinct()
        .where(RC.repository_id.in_(repository_ids), RC.content_id > after, condition)
        .order_by(RC.content_id).limit(limit)))


def reclaim_content(session: Session, ids: list[int], *, repository_ids: list[int],
                    keep_latest: bool, served: set[tuple[int, int]]
                    ) -> tuple[int, list[Doomed]]:
    """Unlink the stored bytes of those of `ids` still reclaimable, and delete the artifacts
    that leaves unreferenced. Returns (units reclaimed, artifacts to delete the files of)."""
    locked = _lock(session, Content, ids)
    if not locked:
        return 0, []
    # The remote artifacts that make the bytes fetchable again may not go while we decide.
    session.execute(select(RA.id).join(CA, CA.id == RA.content_artifact_id)
                    .where(among(session, CA.content_id, locked))
                    .with_for_update(read=True, of=RA))
    eligible = list(session.scalars(select(Content.id).where(
        among(session, Content.id, locked),
        _reclaimable(Content.id, repository_ids=repository_ids, keep_latest=keep_latest,
                     served=served))))
    if not eligible:
        return 0, []
    linked = among(session, CA.content_id, eligible)
    artifact_ids = sorted(set(session.scalars(select(CA.artifact_id).where(
        linked, CA.artifact_id.is_not(None)))))
    session.execute(update(CA).where(linked, CA.artifact_id.is_not(None))
                    .values(artifact_id=None).execution_options(**QUIET))
    return len(eligible), delete_artifacts(session, artifact_ids)
