"""What the content app serves, read from the database: which distribution a path belongs
to, what that distribution serves, what a path in it is, and directory listings.

Functions over an explicit session; they never write. Every query is indexed and bounded:
a path costs a few index look-ups whatever the repository's size, and a listing reads one
folder with a skip-scan over the path index, never the whole version.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Callable, Iterable, Iterator

from sqlalchemy import and_, null, or_, select, text
from sqlalchemy.orm import Session

from pallet.artifacts.models import Artifact
from pallet.content.models import ContentArtifact
from pallet.distributions.models import Distribution, ServingGeneration
from pallet.plugin import GeneratedFile, ServedRepository
from pallet.plugins import Registry
from pallet.publications.models import Publication, PublishedMetadata
from pallet.repositories.models import Repository, RepositoryContent, RepositoryVersion

CA, RC, PM = ContentArtifact, RepositoryContent, PublishedMetadata

# Superseded publications still inside their grace period are looked at, newest first, up
# to this many: a repository publishing many times a minute keeps the look-ups bounded.
MAX_GRACE_PUBLICATIONS = 16
# Collations that order text as UTF-8 bytes (code points), as path ranges need.
BYTE_ORDER_COLLATIONS = {"C", "POSIX", "C.UTF-8", "C.utf8", "ucs_basic"}

DIRECTORY = "directory"


@dataclass(frozen=True, slots=True)
class Dist:
    id: int
    base_path: str
    hidden: bool
    publication_id: int | None
    version_id: int | None
    repository_id: int | None
    name: str


@dataclass(frozen=True, slots=True)
class Source:
    """One publication, or one version served bare (no metadata), as a distribution serves it."""

    repository_id: int
    version_number: int
    publication_id: int | None
    pass_through: bool
    created_at: float
    # The distribution names exactly this publication or version: its paths never change.
    fixed: bool
    # A superseded publication serves paths the newest lacks until then (wall-clock time).
    valid_until: float | None = None


@dataclass(frozen=True, slots=True)
class StoredFile:
    sha256: str
    size: int
    metadata: bool


@dataclass(frozen=True, slots=True)
class RemoteOnly:
    """A content file whose bytes are not stored yet (on-demand or streamed)."""

    content_artifact_id: int
    sha256: str
    size: int | None


Found = StoredFile | RemoteOnly | str | None  # str: DIRECTORY; None: nothing there


@dataclass(frozen=True, slots=True)
class Generated:
    """A file the repository type generates at a distribution's path
    (`RepositoryType.generated_files`), with what it is made from but the URL, which each
    request gives (`served.url` is empty here)."""

    file: GeneratedFile
    served: ServedRepository


def timestamp(value: datetime) -> float:
    """Seconds since the epoch; SQLite hands back naive datetimes, which are UTC."""
    if value.tzinfo is None:
        value = value.replace(tzinfo=timezone.utc)
    return value.timestamp()


def upper_bound(prefix: str) -> str | None:
    """The smallest string above every path under `prefix` ('a/b/' -> 'a/b0')."""
    return prefix[:-1] + "0" if prefix else None


class Catalog:
    """The content app's queries, with the one database fact they depend on: whether text
    compares in byte order by itself (SQLite, and PostgreSQL with a C collation) or needs
    COLLATE "C" for path ranges to be right."""

    def __init__(self, plugins: Registry) -> None:
        self.plugins = plugins
        self._collate: bool | None = None
        # Paths some repository type generates: any other path costs no query for them.
        self.generated_paths = frozenset(path for kind in plugins.repository_types.values()
                                         for path in kind.generated_files)

    def _path(self, session: Session, column):
        if self._collate is None:
            self._collate = False
            if session.get_bind().dialect.name == "postgresql":
                collation = session.scalar(text(
                    "SELECT datcollate FROM pg_database WHERE datname = current_database()"))
                self._collate = collation not in BYTE_ORDER_COLLATIONS
        return column.collate("C") if self._collate else column

    def _range(self, session: Session, column, bound: str, inclusive: bool, prefix: str):
        path = self._path(session, column)
        conditions = [path >= bound if inclusive else path > bound]
        upper = upper_bound(prefix)
        if upper is not None:
            conditions.append(path < upper)
        return path, and_(*conditions)

    # -- distributions ---------------------------------------------------------------------

    @staticmethod
    def generation(session: Session) -> int:
        value = session.scalar(select(ServingGeneration.generation)
                               .where(ServingGeneration.id == 1))
        return value or 0

    @staticmethod
    def distributions(session: Session, base_paths: Iterable[str]) -> dict[str, Dist]:
        rows = session.execute(select(
            Distribution.id, Distribution.base_path, Distribution.hidden,
            Distribution.publication_id, Distribution.repository_version_id,
            Distribution.repository_id, Distribution.name)
            .where(Distribution.base_path.in_(list(base_paths))))
        return {row.base_path: Dist(*row) for row in rows}

    @staticmethod
    def every_distribution(session: Session, limit: int) -> dict[str, Dist] | None:
        """Every distribution by base path, or None if there are more than `limit`."""
        rows = session.execute(select(
            Distribution.id, Distribution.base_path, Distribution.hidden,
            Distribution.publication_id, Distribution.repository_version_id,
            Distribution.repository_id, Distribution.name).limit(limit + 1)).all()
        return {row.base_path: Dist(*row) for row in rows} if len(rows) <= limit else None

    def distribution_children(self, session: Session, prefix: str, cap: int
                              ) -> tuple[list[tuple[str, int | None]], bool]:
        """The next segments of visible base paths under `prefix`, as folders."""
        def fetch(bound: str, inclusive: bool, limit: int):
            path, where = self._range(session, Distribution.base_path, bound, inclusive, prefix)
            return session.execute(select(Distribution.base_path, null())
                                   .where(where, Distribution.hidden.is_(False))
                                   .order_by(path).limit(limit)).all()

        children, truncated = scan_children(fetch, prefix, cap)
        return [(name if name.endswith("/") else name + "/", None)
                for name in sorted(children)], truncated

    # -- what a distribution serves ---------------------------------------------------------

    def target(self, session: Session, dist: Dist, *, now: float, grace: float
               ) -> tuple[Source, ...]:
        """What `dist` serves, newest first: one source, or a repository's newest
        publication followed by those still in their grace period. Empty: nothing."""
        if dist.publication_id is not None:
            rows = self._publications(session, Publication.id == dist.publication_id, 1)
            return tuple(_source(row, fixed=True) for row in rows)
        if dist.version_id is not None:
            return self._version(session, RepositoryVersion.id == dist.version_id, fixed=True)
        if dist.repository_id is None:
            return ()
        kind = session.scalar(select(Repository.type)
                              .where(Repository.id == dist.repository_id))
        if kind is None:
            return ()
        repository_type = self.plugins.repository_types.get(kind)
        if repository_type is not None and repository_type.publish is None:
            return self._version(session, RepositoryVersion.repository_id == dist.repository_id,
                                 fixed=False)
        rows = self._publications(session, Publication.repository_id == dist.repository_id,
                                  MAX_GRACE_PUBLICATIONS + 1)
        sources = [_source(row, fixed=False) for row in rows[:1]]
        for newer, older in zip(rows, rows[1:]):
            until = timestamp(newer.created_at) + grace
            if until <= now:
                break
            sources.append(_source(older, fixed=False, valid_until=until))
        return tuple(sources)

    @staticmethod
    def _publications(session: Session, where, limit: int) -> list:
        return session.execute(
            select(Publication.repository_id, RepositoryVersion.number, Publication.id,
                   Publication.pass_through, Publication.created_at)
            .join(RepositoryVersion, RepositoryVersion.id == Publication.version_id)
            .where(where).order_by(Publication.id.desc()).limit(limit)).all()

    @staticmethod
    def _version(session: Session, where, *, fixed: bool) -> tuple[Source, ...]:
        row = session.execute(
            select(RepositoryVersion.repository_id, RepositoryVersion.number,
                   RepositoryVersion.created_at)
            .where(where).order_by(RepositoryVersion.number.desc()).limit(1)).first()
        if row is None:
            return ()
        return (Source(repository_id=row.repository_id, version_number=row.number,
                       publication_id=None, pass_through=True,
                       created_at=timestamp(row.created_at), fixed=fixed),)

    # -- paths ------------------------------------------------------------------------------

    def find(self, session: Session, source: Source, path: str) -> Found:
        """What `path` ('' is the top, 'a/b/' a folder) is in `source`."""
        if path == "" or path.endswith("/"):
            return DIRECTORY if path == "" or self._has_children(session, source, path) else None
        if source.publication_id is not None:
            row = session.execute(
                select(Artifact.sha256, Artifact.size)
                .join(PM, PM.artifact_id == Artifact.id)
                .where(PM.publication_id == source.publication_id,
                       PM.relative_path == path)).first()
            if row is not None:
                return StoredFile(row.sha256, row.size, metadata=True)
        if _serves_content(source):
            row = session.execute(
                select(CA.id, CA.sha256, CA.size, CA.artifact_id)
                .join(RC, RC.content_id == CA.content_id)
                .where(CA.relative_path == path, _member_of(session, source))
                .order_by(CA.id.desc()).limit(1)).first()
            if row is not None:
                if row.artifact_id is None:
                    return RemoteOnly(row.id, row.sha256, row.size)
                return StoredFile(row.sha256, row.size, metadata=False)
        return DIRECTORY if self._has_children(session, source, path + "/") else None

    @staticmethod
    def files(session: Session, source: Source) -> Iterator[tuple[str, str, int | None,
                                                                    bool | None, int]]:
        """Every file `source` serves as `find` finds it: (path, sha256, size, stored, content
        artifact id), content first by ascending id, then metadata (`stored` None), so the
        last of a path given twice is the one `find` returns. Streamed, for `index.py`."""
        if _serves_content(source):
            number = source.version_number
            rows = session.execute(
                select(CA.relative_path, CA.sha256, CA.size, CA.artifact_id.is_not(None), CA.id)
                .join(RC, RC.content_id == CA.content_id)
                .where(RC.repository_id == source.repository_id, RC.version_added <= number,
                       or_(RC.version_removed.is_(None), RC.version_removed > number))
                .order_by(CA.id), execution_options={"yield_per": 10_000})
            yield from (tuple(row) for row in rows)
        if source.publication_id is not None:
            rows = session.execute(
                select(PM.relative_path, Artifact.sha256, Artifact.size)
                .join(Artifact, Artifact.id == PM.artifact_id)
                .where(PM.publication_id == source.publication_id),
                execution_options={"yield_per": 10_000})
            yield from ((path, sha256, size, None, 0) for path, sha256, size in rows)

    def generated(self, session: Session, dist: Dist, source: Source, path: str
                  ) -> Generated | None:
        """The file `source`'s repository type generates at `path`, if it generates one."""
        if path not in self.generated_paths:
            return None
        row = session.execute(select(Repository.type, Repository.name)
                              .where(Repository.id == source.repository_id)).first()
        kind = self.plugins.repository_types.get(row.type) if row is not None else None
        file = kind.generated_files.get(path) if kind is not None else None
        if file is None:
            return None
        metadata: frozenset[str] = frozenset()
        if source.publication_id is not None:
            metadata = frozenset(session.scalars(
                select(PM.relative_path).where(PM.publication_id == source.publication_id)))
        return Generated(file, ServedRepository(
            distribution=dist.name, url="", repository=row.name,
            version=source.version_number, metadata=metadata))

    def _has_children(self, session: Session, source: Source, prefix: str) -> bool:
        for fetch in self._fetchers(session, source, prefix):
            if fetch(prefix, False, 1):
                return True
        return False

    def children(self, session: Session, source: Source, prefix: str, cap: int
                 ) -> tuple[list[tuple[str, int | None]], bool]:
        """The entries directly under folder `prefix` ('' or ending in '/'), sorted, as
        (name, size) with folders named 'x/' and sized None; and whether `cap` cut them."""
        merged: dict[str, int | None] = {}
        truncated = False
        for fetch in reversed(self._fetchers(session, source, prefix)):  # metadata wins
            found, cut = scan_children(fetch, prefix, cap)
            merged.update(found)
            truncated |= cut
        return sorted(merged.items())[:cap], truncated or len(merged) > cap

    def _fetchers(self, session: Session, source: Source, prefix: str) -> list[Callable]:
        """Functions (bound, inclusive, limit) -> [(path, size)] in path order, under prefix."""
        fetchers = []
        if source.publication_id is not None:
            def metadata(bound: str, inclusive: bool, limit: int):
                path, where = self._range(session, PM.relative_path, bound, inclusive, prefix)
                return session.execute(
                    select(PM.relative_path, Artifact.size)
                    .join(Artifact, Artifact.id == PM.artifact_id)
                    .where(PM.publication_id == source.publication_id, where)
                    .order_by(path).limit(limit)).all()
            fetchers.append(metadata)
        if _serves_content(source):
            def content(bound: str, inclusive: bool, limit: int):
                path, where = self._range(session, CA.relative_path, bound, inclusive, prefix)
                return session.execute(
                    select(CA.relative_path, CA.size)
                    .join(RC, RC.content_id == CA.content_id)
                    .where(where, _member_of(session, source))
                    .order_by(path).limit(limit)).all()
            fetchers.append(content)
        return fetchers


def _serves_content(source: Source) -> bool:
    return source.publication_id is None or source.pass_through


def _member_of(session: Session, source: Source):
    """The membership row (joined on content id) is in the source's version. On SQLite the
    repository is written as an expression (`+ 0`): without statistics it would otherwise
    start from every membership row of the repository instead of walking the path index
    and checking each path's few rows. PostgreSQL plans this well from its statistics (and
    would misjudge the expression)."""
    number = source.version_number
    repository = RC.repository_id
    if session.get_bind().dialect.name == "sqlite":
        repository = repository + 0
    return and_(repository == source.repository_id, RC.version_added <= number,
                or_(RC.version_removed.is_(None), RC.version_removed > number))


def _source(row, *, fixed: bool, valid_until: float | None = None) -> Source:
    return Source(repository_id=row.repository_id, version_number=row.number,
                  publication_id=row.id, pass_through=row.pass_through,
                  created_at=timestamp(row.created_at), fixed=fixed, valid_until=valid_until)


def scan_children(fetch: Callable, prefix: str, cap: int
                  ) -> tuple[dict[str, int | None], bool]:
    """The immediate children of `prefix` from a path-ordered `fetch`, skipping each
    sub-folder's contents with one seek, so a folder costs about one query per entry at
    worst and never reads a whole tree. Stops after `cap` entries (then truncated)."""
    children: dict[str, int | None] = {}
    bound, inclusive, batch = prefix, False, 64
    while True:
        rows = fetch(bound, inclusive, batch)
        new = 0
        for path, size in rows:
            name, slash, _ = path[len(prefix):].partition("/")
            key = name + slash
            if slash:  # in a sub-folder: the next read starts after all of it
                bound, inclusive = prefix + name + "0", True
            else:
                bound, inclusive = path, False
            if key not in children:
                children[key] = None if slash else size
                new += 1
                if len(children) > cap:
                    return children, True
        if len(rows) < batch:
            return children, False
        # Batches grow while they bring new entries and shrink when they are spent inside
        # a large sub-folder.
        batch = min(4096, max(16, 2 * new))
