"""Publications: render a version once per set of publish options. Functions over an
explicit session; the caller owns the transaction (a task, or a version being created)."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from functools import partial
from typing import Any, Callable, Iterable, Iterator

from pydantic import ValidationError
from sqlalchemy import and_, func, or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from pallet.artifacts.models import Artifact
from pallet.content.models import ContentArtifact
from pallet.artifacts.service import record_artifact
from pallet.artifacts.storage import ArtifactStorage, Writer
from pallet.content.service import stream_units
from pallet.distributions.models import Distribution
from pallet.errors import Conflict, Invalid, NotFound, validation_problems
from pallet.paths import validate_relative_path
from pallet.plugin import PublishedUnit, PublishOptions, RepositoryType, Signer
from pallet.plugins import Registry
from pallet.publications.models import Publication, PublishedMetadata
from pallet.repositories.models import Repository, RepositoryContent, RepositoryVersion
from pallet.repositories.versions import present_at

CA, RC = ContentArtifact, RepositoryContent
PUBLISH_STAGE = "writing metadata"
# progress(stage, done, total), as a task reports it (it raises Canceled when asked to stop).
Progress = Callable[[str, int, int | None], None]


def publishing_type(plugins: Registry, repository: Repository) -> RepositoryType:
    repository_type = plugins.repository_type(repository.type)
    if repository_type.publish is None:
        raise Invalid(f"{repository.type} repositories are served from their versions and "
                      "have no publications", details={"type": repository.type})
    return repository_type


def validate_options(plugins: Registry, repository: Repository,
                     options: dict[str, Any] | None) -> PublishOptions:
    """The type's publish options from `options`, or Invalid saying what is wrong."""
    model = publishing_type(plugins, repository).publish_options
    try:
        return model.model_validate(options or {})
    except ValidationError as exc:
        summary, problems = validation_problems(exc.errors())
        raise Invalid(f"invalid publish options: {summary}",
                      details={"errors": problems}) from None


def options_digest(options: PublishOptions) -> str:
    canonical = json.dumps(options.model_dump(mode="json"), sort_keys=True,
                           separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def publish(session: Session, plugins: Registry, storage: ArtifactStorage,
            repository: Repository, version: RepositoryVersion,
            options: dict[str, Any] | None = None, *, signer: Signer | None = None
            ) -> tuple[Publication, bool]:
    """The publication of `version` with `options`: the existing one, or a new one, signed
    by `signer` if given. Returns (publication, created). The signer is not yet part of
    what identifies a publication: an existing one is returned whoever signed it."""
    parsed = validate_options(plugins, repository, options)
    existing = find_publication(session, version, parsed)
    if existing is not None:
        return existing, False
    files = render(session, plugins, storage, repository, version, parsed, signer=signer)
    return record_publication(session, plugins, repository, version, parsed, files)


def find_publication(session: Session, version: RepositoryVersion,
                     options: PublishOptions) -> Publication | None:
    return session.scalar(select(Publication).where(
        Publication.version_id == version.id,
        Publication.options_digest == options_digest(options)))


def render(session: Session, plugins: Registry, storage: ArtifactStorage,
           repository: Repository, version: RepositoryVersion, options: PublishOptions,
           progress: Progress | None = None, signer: Signer | None = None
           ) -> dict[str, tuple[str, int]]:
    """Write a publication's metadata files into the artifact store, without recording
    anything: {relative path: (sha256, size)}. Only needs a read session. `signer` is what
    the publisher sees as `output.signer` (None: not signed; nothing in Pallet passes one
    yet, see `pallet.plugin.Signer`)."""
    repository_type = publishing_type(plugins, repository)
    check = _path_check(session, repository_type, repository, version.number)
    counts = {type_: c.get("present", 0) for type_, c in (version.counts or {}).items()}
    units = published_units(session, repository, version.number)
    if progress is not None:
        units = _reporting(units, progress, sum(counts.values()))
    units = _Units(units, counts)
    output = _StoringOutput(storage, check, signer)
    try:
        repository_type.publish(units, options, output)
    finally:
        output.abort_open()
    return output.files


def record_publication(session: Session, plugins: Registry, repository: Repository,
                       version: RepositoryVersion, options: PublishOptions,
                       files: dict[str, tuple[str, int]]) -> tuple[Publication, bool]:
    """Record a rendered publication; if a concurrent transaction recorded the same
    version and options first, that one is returned instead. Returns (publication, created)."""
    repository_type = publishing_type(plugins, repository)
    digest = options_digest(options)
    publication = Publication(repository_id=repository.id, version_id=version.id,
                              type=repository.type, options=options.model_dump(mode="json"),
                              options_digest=digest,
                              pass_through=repository_type.pass_through)
    for relative_path, (sha256, size) in sorted(files.items()):
        artifact = record_artifact(session, sha256=sha256, size=size)
        publication.metadata_files.append(
            PublishedMetadata(relative_path=relative_path, artifact_id=artifact.id))
    try:
        with session.begin_nested():
            session.add(publication)
    except IntegrityError:  # a concurrent task recorded the same version and options first
        existing = find_publication(session, version, options)
        if existing is None:
            raise
        return existing, False
    return publication, True


def _path_check(session: Session, repository_type: RepositoryType, repository: Repository,
                number: int) -> Callable[[str], None] | None:
    """What each metadata path the publisher opens is checked against: the paths the content
    app generates for the type, and (pass-through) the version's content paths, which are
    checked against the generated paths here, before anything is written."""
    generated = tuple(repository_type.generated_files)
    checks = [partial(_refuse_generated_path, generated)] if generated else []
    if repository_type.pass_through:
        for path in generated:
            _refuse_content_path(session, repository, number, path,
                                 what="file the content app generates at")
        checks.append(partial(_refuse_content_path, session, repository, number))
    if not checks:
        return None

    def check(path: str) -> None:
        for one in checks:
            one(path)
    return check


def _refuse_generated_path(generated: Iterable[str], path: str) -> None:
    """Invalid if metadata file `path` lies where the content app generates a file for the
    type (`RepositoryType.generated_files`), or one is a folder of the other."""
    for name in generated:
        if path == name or path.startswith(name + "/") or name.startswith(path + "/"):
            raise Invalid(f"the publication's metadata file {path!r} collides with the file "
                          f"the content app generates at {name!r}: clients could not reach "
                          "both", code="path_collision",
                          details={"metadata_path": path, "generated_path": name})


def _refuse_content_path(session: Session, repository: Repository, number: int,
                         path: str, *, what: str = "metadata file") -> None:
    """Invalid if a pass-through publication's metadata file at `path` would collide with
    a content file of version `number`: the same path (the content could no longer be
    reached), or one inside the other as a folder (a tree could not hold both). Every
    publication is rendered, whatever asks for it (the API, auto-publish, an import), so
    the check is here, not in each plugin's options. Index look-ups on the path."""
    parts = path.split("/")
    ancestors = ["/".join(parts[:i]) for i in range(1, len(parts) + 1)]
    column = CA.relative_path
    if session.get_bind().dialect.name == "postgresql":
        column = column.collate("C")  # byte order, as '/' < '0' needs, whatever the locale
    below = and_(column > path + "/", column < path + "0")
    found = session.scalar(
        select(CA.relative_path).join(RC, RC.content_id == CA.content_id)
        .where(RC.repository_id == repository.id, present_at(RC, number),
               or_(CA.relative_path.in_(ancestors), below)).limit(1))
    if found is not None:
        advice = ("choose another path in the publish options" if what == "metadata file"
                  else "remove or move that content file")
        raise Invalid(f"the publication's {what} {path!r} collides with the content "
                      f"file {found!r} of version {number}: clients could not reach both; "
                      f"{advice}", code="path_collision",
                      details={"metadata_path": path, "content_path": found})


@dataclass(frozen=True)
class _Units:
    """The units a publisher is given (`pallet.plugin.PublishedUnits`): their counts, known
    from the version before the stream is read."""

    stream: Iterable[PublishedUnit]
    counts: dict[str, int]

    def __iter__(self) -> Iterator[PublishedUnit]:
        return iter(self.stream)


def _reporting(units: Iterable[PublishedUnit], progress: Progress, total: int
               ) -> Iterator[PublishedUnit]:
    done = 0
    progress(PUBLISH_STAGE, done, total)
    for unit in units:
        yield unit
        done += 1
        if done % 1000 == 0:
            progress(PUBLISH_STAGE, done, total)
    progress(PUBLISH_STAGE, done, total)


def autopublish(session: Session, plugins: Registry, storage: ArtifactStorage,
                repository: Repository, version: RepositoryVersion | None
                ) -> Publication | None:
    """Publish a version just created, in its own transaction, if the repository
    auto-publishes. No new version, no new publication."""
    if version is None or not repository.autopublish:
        return None
    publication, _ = publish(session, plugins, storage, repository, version,
                             repository.publish_options)
    return publication


def published_units(session: Session, repository: Repository, number: int
                    ) -> Iterator[PublishedUnit]:
    """The units of a version with their files, streamed in content order."""
    return stream_units(session, select(RC.content_id).where(RC.repository_id == repository.id,
                                                             present_at(RC, number)))


def get_publication(session: Session, publication_id: int) -> Publication:
    publication = session.get(Publication, publication_id)
    if publication is None:
        raise NotFound(f"there is no publication {publication_id}",
                       details={"publication": publication_id})
    return publication


def latest_publication(session: Session, repository_id: int) -> Publication | None:
    return session.scalar(select(Publication).where(Publication.repository_id == repository_id)
                          .order_by(Publication.id.desc()).limit(1))


def count_publications(session: Session, repository_id: int) -> int:
    return session.scalar(select(func.count()).select_from(Publication)
                          .where(Publication.repository_id == repository_id))


def list_publications(session: Session, *, repository: Repository | None = None,
                      version: RepositoryVersion | None = None, limit: int = 100,
                      offset: int = 0) -> tuple[int, list[Publication]]:
    """Publications, newest first."""
    query = select(Publication)
    if repository is not None:
        query = query.where(Publication.repository_id == repository.id)
    if version is not None:
        query = query.where(Publication.version_id == version.id)
    count = session.scalar(select(func.count()).select_from(query.subquery()))
    items = session.scalars(query.order_by(Publication.id.desc()).limit(limit).offset(offset))
    return count, list(items)


def metadata_files(session: Session, publication_ids: Iterable[int]
                   ) -> dict[int, list[tuple[str, str, int]]]:
    """{publication id: [(relative path, sha256, size)]} for a page of publications."""
    files: dict[int, list[tuple[str, str, int]]] = {}
    rows = session.execute(
        select(PublishedMetadata.publication_id, PublishedMetadata.relative_path,
               Artifact.sha256, Artifact.size)
        .join(Artifact, Artifact.id == PublishedMetadata.artifact_id)
        .where(PublishedMetadata.publication_id.in_(list(publication_ids)))
        .order_by(PublishedMetadata.publication_id, PublishedMetadata.relative_path))
    for publication_id, relative_path, sha256, size in rows:
        files.setdefault(publication_id, []).append((relative_path, sha256, size))
    return files


def delete_publication(session: Session, publication: Publication) -> None:
    """Delete a publication no distribution names; its metadata artifacts stay until
    orphan cleanup. A distribution serving its repository moves to the newest remaining."""
    names = list(session.scalars(select(Distribution.name)
                                 .where(Distribution.publication_id == publication.id)
                                 .order_by(Distribution.name).limit(20)))
    if names:
        raise Conflict(f"publication {publication.id} is served by distribution(s) "
                       f"{', '.join(names)}: point them elsewhere or delete them first",
                       details={"distributions": names})
    session.delete(publication)
    session.flush()


@dataclass
class _Open:
    writer: Writer
    relative_path: str


class _StoringOutput:
    """The publisher's output: each file goes through a verifying artifact writer."""

    def __init__(self, storage: ArtifactStorage, check: Callable[[str], None] | None = None,
                 signer: Signer | None = None) -> None:
        self.storage, self.check, self.signer = storage, check, signer
        self.files: dict[str, tuple[str, int]] = {}
        self._open: list[_Open] = []

    def open(self, relative_path: str) -> "_MetadataFile":
        validate_relative_path(relative_path, what="metadata path")
        if relative_path in self.files or any(o.relative_path == relative_path
                                              for o in self._open):
            raise Invalid(f"the publisher wrote {relative_path!r} twice")
        if self.check is not None:
            self.check(relative_path)
        entry = _Open(self.storage.writer(), relative_path)
        self._open.append(entry)
        return _MetadataFile(self, entry)

    def close(self, entry: _Open) -> None:
        sha256 = entry.writer.commit()
        self.files[entry.relative_path] = (sha256, entry.writer.size)
        self._open.remove(entry)

    def abort_open(self) -> None:
        for entry in self._open:
            entry.writer.abort()
        self._open.clear()


class _MetadataFile:
    def __init__(self, output: _StoringOutput, entry: _Open) -> None:
        self._output, self._entry = output, entry

    def write(self, data: bytes) -> int:
        self._entry.writer.write(data)
        return len(data)

    def __enter__(self) -> "_MetadataFile":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self._output.close(self._entry)
