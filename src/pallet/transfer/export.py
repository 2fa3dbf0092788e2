"""Writing exact repository versions into an archive, full or since a base version.

Everything is streamed from the database and the artifact store straight into the sink:
no temporary copy of content or metadata, and memory stays bounded whatever the size. An
artifact several repositories (or units) share travels once. An incremental export carries
the units its version adds since the base, only the artifacts the base did not hold, and the
identities of the units it removes.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any, Callable, Iterator

from sqlalchemy import exists, func, or_, select, union
from sqlalchemy.orm import Session, aliased

from pallet.artifacts.models import Artifact
from pallet.artifacts.storage import ArtifactStorage
from pallet.content.models import Content, ContentArtifact
from pallet.content.service import stream_units
from pallet.db.base import utcnow
from pallet.distributions.models import Distribution
from pallet.errors import Invalid
from pallet.publications.models import Publication
from pallet.remotes import fetch
from pallet.repositories.models import Repository, RepositoryVersion
from pallet.repositories.versions import content_ids_query, diff_queries
from pallet.runtime import Runtime
from pallet.transfer import layout, signing
from pallet.transfer.chunks import Chunk, Sink
from pallet.transfer.writer import SMALL, ArchiveWriter

CA = ContentArtifact
REPORTED_MISSING = 20
# progress(stage, done, total), as a task reports it (it raises Canceled when asked to stop).
Progress = Callable[[str, int, int | None], None]


def no_progress(stage: str, done: int, total: int | None) -> None:
    pass


@dataclass(frozen=True)
class Selection:
    """One repository version to export, and for an incremental the version it starts from."""

    repository: Repository
    version: RepositoryVersion
    base: RepositoryVersion | None = None

    def added(self):
        """SELECT of the content ids the archive carries for this repository."""
        if self.base is None:
            return content_ids_query(self.repository, self.version.number)
        return diff_queries(self.repository, self.base.number, self.version.number)[0]

    def removed(self):
        return diff_queries(self.repository, self.base.number, self.version.number)[1]

    def new_artifacts(self):
        """SELECT of the artifact ids of the added units that the base did not hold."""
        added = select(CA.artifact_id).where(CA.content_id.in_(self.added()),
                                             CA.artifact_id.is_not(None))
        if self.base is None:
            return added
        # NOT EXISTS, not EXCEPT: the queries of several repositories go into one UNION,
        # and SQLite cannot nest a compound SELECT in another.
        held = aliased(CA)
        return added.where(~exists().where(
            held.artifact_id == CA.artifact_id,
            held.content_id.in_(content_ids_query(self.repository, self.base.number))))


def artifacts_query(selections: list[Selection]):
    """SELECT (sha256, size) of every artifact the archive carries, once, by sha256."""
    ids = union(*(s.new_artifacts() for s in selections)).subquery()
    return (select(Artifact.sha256, Artifact.size).join(ids, ids.c[0] == Artifact.id)
            .order_by(Artifact.sha256))


def missing_files(selections: list[Selection]):
    """SELECT (sha256, size) of the files of the units to export whose bytes are not
    stored (on-demand), once each, by sha256."""
    files = union(*(select(CA.sha256, CA.size).where(CA.content_id.in_(s.added()),
                                                     CA.artifact_id.is_(None))
                    for s in selections)).subquery()
    return (select(files.c.sha256, func.max(files.c.size)).group_by(files.c.sha256)
            .order_by(files.c.sha256))


def fetch_missing(runtime: Runtime, choose: Callable[[Session], list[Selection]],
                  progress: Progress = no_progress) -> None:
    """Before an export's snapshot: fetch from their remotes the files of the units
    `choose(session)` selects whose bytes are not stored (verified, stored and recorded);
    if some cannot be fetched, fail up front, listing what is missing and why. The list
    streams from one read transaction (a snapshot that locks nothing) while each batch is
    fetched and recorded in transactions of its own, so memory stays bounded."""
    failed: dict[str, str] = {}
    with runtime.db.read() as session:
        query = missing_files(choose(session)).subquery()
        count, size = session.execute(select(func.count(), func.coalesce(
            func.sum(query.c[1]), 0))).one()
        if not count:
            return
        rows = session.execute(select(query).execution_options(yield_per=fetch.BATCH))
        with fetch.Fetcher(runtime, total=count, total_bytes=int(size),
                           progress=progress) as fetcher:
            for batch in rows.partitions(fetch.BATCH):
                result = fetcher.fetch([fetch.Wanted(*row) for row in batch])
                failed.update(result.failed)
                if failed:  # the export fails anyway: say so now, not after every batch
                    break
    if failed:
        with runtime.db.read() as session:
            check_downloaded(session, choose(session), reasons=failed)


def check_downloaded(session: Session, selections: list[Selection], *,
                     reasons: dict[str, str] | None = None) -> None:
    """Refuse up front if a unit to export has a file whose bytes are not stored (on-demand):
    the export would be incomplete. Lists what is missing, with `reasons` (sha256 -> why
    fetching it failed) where known."""
    missing: list[dict[str, str]] = []
    total = 0
    for selection in selections:
        query = (select(CA.relative_path, CA.sha256)
                 .where(CA.content_id.in_(selection.added()), CA.artifact_id.is_(None)))
        total += session.scalar(select(func.count()).select_from(query.subquery()))
        for path, sha256 in session.execute(query.order_by(CA.relative_path)
                                            .limit(REPORTED_MISSING - len(missing))):
            missing.append({"repository": selection.repository.name, "relative_path": path,
                            "sha256": sha256})
            if reasons and sha256 in reasons:
                missing[-1]["reason"] = reasons[sha256]
    if not total:
        return
    names = ", ".join(f"{m['repository']}:{m['relative_path']}" for m in missing[:5])
    if reasons:
        first = next(iter(reasons.values()))
        message = (f"{total} file(s) to export are not stored and could not be fetched from "
                   f"their remotes, e.g. {names}; the first failure: {first}")
    else:
        message = (f"{total} file(s) to export were never downloaded (on-demand content), "
                   f"e.g. {names}: export them with fetching on, or sync them with the "
                   "immediate policy first")
    raise Invalid(message, code="not_downloaded", details={"missing": missing, "count": total})


def _count(session: Session, query) -> int:
    return session.scalar(select(func.count()).select_from(query.subquery()))


def header(session: Session, selections: list[Selection], *, exporter: str) -> dict[str, Any]:
    """The archive's header: what it holds, counted before anything is written."""
    repositories = []
    for index, s in enumerate(selections):
        repository, version = s.repository, s.version
        publications = list(session.scalars(
            select(Publication.options).where(Publication.version_id == version.id)
            .order_by(Publication.id)))
        distributions = distributions_of(session, repository, version)
        entry = {"index": index, "name": repository.name, "type": repository.type,
                 "description": repository.description, "version": version.number,
                 "digest": version.digest, "counts": version.counts or {},
                 "added": _count(session, s.added()),
                 "removed": _count(session, s.removed()) if s.base else 0,
                 "autopublish": repository.autopublish,
                 "publish_options": repository.publish_options or {},
                 "publications": publications,
                 "distributions": [{"name": n, "base_path": p} for n, p in distributions]}
        if s.base is not None:
            entry.update(base_version=s.base.number, base_digest=s.base.digest)
        repositories.append(entry)
    carried = artifacts_query(selections).subquery()
    totals = session.execute(select(func.count(), func.coalesce(func.sum(carried.c.size), 0))
                             ).one()
    return {"format": layout.FORMAT, "format_version": layout.FORMAT_VERSION,
            "export_id": uuid.uuid4().hex, "created_at": utcnow().isoformat(),
            "exporter": exporter, "incremental": any(s.base for s in selections),
            "repositories": repositories, "artifacts": totals[0],
            "artifact_bytes": int(totals[1])}


def distributions_of(session: Session, repository: Repository,
                     version: RepositoryVersion) -> list[tuple[str, str]]:
    """(name, base path) of the distributions that travel with `version`: those serving the
    repository, that version, or a publication of it."""
    published = select(Publication.id).where(Publication.version_id == version.id)
    return [tuple(row) for row in session.execute(
        select(Distribution.name, Distribution.base_path).where(or_(
            Distribution.repository_id == repository.id,
            Distribution.repository_version_id == version.id,
            Distribution.publication_id.in_(published))).order_by(Distribution.name))]


def _units(session: Session, selection: Selection) -> Iterator[dict[str, Any]]:
    for unit in stream_units(session, selection.added()):
        yield {"type": unit.type, "fields": unit.fields,
               "artifacts": {f.relative_path: f.sha256 for f in unit.files}}


def _removed(session: Session, selection: Selection) -> Iterator[str]:
    ids = selection.removed().subquery()
    yield from session.scalars(select(Content.digest).join(ids, ids.c[0] == Content.id)
                               .order_by(Content.digest).execution_options(yield_per=10_000))


def write_archive(session: Session, storage: ArtifactStorage, selections: list[Selection],
                  document: dict[str, Any], sink: Sink, *, private_key: str | None = None,
                  progress: Progress = lambda stage, done, total: None
                  ) -> tuple[list[Chunk], dict[str, Any]]:
    """Write the archive `document` (from `header`) describes; return its pieces and its
    (signed) table of contents."""
    writer = ArchiveWriter(sink)
    writer.header(document)
    total, done = document["artifact_bytes"], 0
    progress("writing artifacts", 0, total)
    rows = session.execute(artifacts_query(selections).execution_options(yield_per=10_000))
    for sha256, size in rows:
        if size <= SMALL:
            writer.small_artifact(sha256, size, storage.read(sha256, size + 1))
        else:
            with storage.open(sha256) as stream:
                writer.artifact(sha256, size, stream)
        done += size
        progress("writing artifacts", done, total)
    for index, selection in enumerate(selections):
        progress("writing units", index, len(selections))
        writer.units(index, _units(session, selection))
        if selection.base is not None:
            writer.removed(index, _removed(session, selection))
    progress("writing units", len(selections), len(selections))

    def toc_of(chunks: list[Chunk]) -> dict[str, Any]:
        toc = {"format": layout.FORMAT, "format_version": layout.FORMAT_VERSION,
               "export_id": document["export_id"], "chunks": [c.as_dict() for c in chunks],
               "summary": document}
        return signing.sign(toc, private_key) if private_key else toc

    return writer.finish(toc_of)
