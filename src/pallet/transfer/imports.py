"""Importing an archive: everything verified before any repository changes.

One pass over the archive, in its order: the header (format version, mapping, destination
types, base digests), then the artifacts (each one re-hashed as it is read, and staged until
the chunk it came in is vouched for by its checksum: see `staged`), then the units
(validated by their type, spooled, and recorded as content that no version holds yet once
the whole archive is vouched for), then the end (every chunk's checksum, the table of
contents, its signature). Only then one transaction makes every destination's new version,
checks that each has the exported content digest, publishes and distributes, or does
nothing at all. A check (dry run) walks the same path, writes nothing, and reports the plan
the import would carry out.

Artifacts and content recorded before a failure are in no version: orphan cleanup may take
them later, and running the import again reuses them; what was only staged is removed. The
task holds the shared orphans lock, so cleanup never removes them while the import runs.
"""

from __future__ import annotations

import contextlib
import errno
import gc
import hashlib
import logging
import os
import shutil
import time
from array import array
from dataclasses import dataclass, field
from typing import Any, Callable

from pydantic import ValidationError
from sqlalchemy import select
from sqlalchemy.orm import Session

from pallet.content.bulk import (NewUnit, find_artifacts, find_content, record_artifacts,
                                 record_units)
from pallet.content.identity import unit_identity
from pallet.content.service import validate_unit
from pallet.errors import Conflict, Invalid, NotFound, PalletError, validation_problems
from pallet.plugins import Registry
from pallet.publications.service import autopublish, publish
from pallet.repositories import service as repositories
from pallet.repositories.contentset import LtHash
from pallet.repositories.models import Repository
from pallet.repositories.versions import create_version, latest_version
from pallet.runtime import Runtime
from pallet.transfer import layout, signing
from pallet.transfer.distribute import (check_archive_distributions, check_distributions,
                                       distribute)
from pallet.transfer.models import Import, Importer
from pallet.transfer.reader import ArchiveReader, UnitsMember
from pallet.transfer.staged import STORE_BATCH, StagedImport, recover
from pallet.transfer.tarstream import BadArchive

SMALL = 1 << 20  # artifacts up to this size are read whole and stored in one write
BLOCK = 1 << 20
Progress = Callable[[str, int, int | None], None]
log = logging.getLogger(__name__)


class OutOfSpace(PalletError):
    status, code = 507, "out_of_space"


@dataclass
class Target:
    """A repository of the archive and the destination it goes to."""

    entry: layout.RepositoryEntry
    destination: str
    repository_id: int | None  # None: the import creates it
    current_version: int | None = None
    current_digest: str | None = None
    next_version: int = 1
    current_state: bytes | None = None  # the newest version's LtHash state
    created_version: int | None = None  # once applied
    add_ids: array = field(default_factory=lambda: array("q"))
    remove_ids: array = field(default_factory=lambda: array("q"))

    @property
    def up_to_date(self) -> bool:
        return self.current_digest == self.entry.digest

    def plan(self) -> dict[str, Any]:
        entry = self.entry
        return {"source": entry.name, "destination": self.destination,
                "create_repository": self.repository_id is None,
                "current_version": self.current_version,
                "current_digest": self.current_digest,
                "base_digest": entry.base_digest, "target_digest": entry.digest,
                "source_version": entry.version,
                "version": None if self.up_to_date else (self.created_version
                                                          or self.next_version),
                "up_to_date": self.up_to_date,
                "units_added": 0 if self.up_to_date else entry.added,
                "units_removed": 0 if self.up_to_date else entry.removed}


def resolve_targets(session: Session, plugins: Registry, importer: Importer,
                    header: layout.Header) -> list[Target]:
    """Where each repository of the archive goes, refused unless the import can apply."""
    targets, seen = [], set()
    sources = importer.sources
    names = [entry.name for entry in header.repositories]
    if sources is not None and (set(names) != sources or len(names) != len(sources)):
        raise BadArchive(f"the archive brings repositories {', '.join(sorted(names))}, not the "
                         f"ones asked for ({', '.join(sorted(sources))})")
    for entry in header.repositories:
        destination = importer.mapping.get(entry.name, entry.name)
        repositories.validate_name(destination)
        if destination in seen:
            raise Invalid(f"two repositories of the archive map onto {destination!r}",
                          details={"destination": destination})
        seen.add(destination)
        if entry.type not in plugins.repository_types:
            raise Invalid(f"repository {entry.name} is of type {entry.type!r}, which this "
                          "server does not know (its plugin is not installed)",
                          details={"type": entry.type})
        repository = session.scalar(select(Repository).where(Repository.name == destination))
        if repository is None:
            if not importer.create_repositories:
                raise NotFound(f"repository {destination!r}, the destination of {entry.name}, "
                               "does not exist: create it, map it elsewhere, or let the "
                               "importer create missing repositories",
                               details={"destination": destination})
            if entry.base_digest is not None:
                raise Conflict(f"the archive holds the changes of {entry.name} since version "
                               f"{entry.base_version}, but {destination!r} does not exist "
                               "here: import a full export first", code="wrong_base",
                               details={"destination": destination,
                                        "base_digest": entry.base_digest})
            targets.append(Target(entry, destination, None))
            _check_publishing(plugins, entry)
            if importer.distributions:
                check_distributions(session, entry, None)
            continue
        if repository.type != entry.type:
            raise Invalid(f"repository {entry.name} is a {entry.type} repository; its "
                          f"destination {destination!r} is a {repository.type} repository",
                          code="wrong_type", details={"destination": destination})
        latest = latest_version(session, repository)
        target = Target(entry, destination, repository.id, latest.number, latest.digest,
                        repository.next_version, latest.lthash)
        if (not target.up_to_date and entry.base_digest is not None
                and latest.digest != entry.base_digest):
            raise Conflict(f"the archive's changes of {entry.name} apply onto a version with "
                           f"content digest {entry.base_digest}, but {destination!r} version "
                           f"{latest.number} has content digest {latest.digest}",
                           code="wrong_base",
                           details={"destination": destination, "base_digest":
                                    entry.base_digest, "destination_digest": latest.digest})
        _check_publishing(plugins, entry)
        if importer.distributions:
            check_distributions(session, entry, repository.id)
        targets.append(target)
    if importer.distributions:
        check_archive_distributions(header)
    return targets


def _check_publishing(plugins: Registry, entry: layout.RepositoryEntry) -> None:
    """The publications the import would make must be valid here, as the check promises."""
    repository_type = plugins.repository_type(entry.type)
    wanted = list(entry.publications)
    if entry.autopublish or entry.publish_options:  # a created repository keeps them
        wanted.append(entry.publish_options)
    if wanted and repository_type.publish is None:
        raise Invalid(f"repository {entry.name} brings publications, but {entry.type} "
                      "repositories have none here")
    for options in wanted:
        try:
            repository_type.publish_options.model_validate(options)
        except ValidationError as exc:  # pydantic's own text names its web site: not here
            summary, problems = validation_problems(exc.errors())
            raise BadArchive(f"repository {entry.name} brings publish options this server "
                             f"refuses: {summary}", details={"errors": problems[:20]}) from None
        except Invalid as exc:
            raise BadArchive(f"repository {entry.name} brings publish options this server "
                             f"refuses: {exc.message}", details=exc.details) from None


@dataclass(frozen=True)
class ImportRules:
    """What an import without an importer of its own may do (a replication's): the
    attributes of an `Importer` that an import reads."""

    mapping: dict[str, str] = field(default_factory=dict)
    create_repositories: bool = True
    distributions: bool = True
    trusted_keys: tuple[str, ...] = ()
    require_signature: bool = False
    # The only source repositories the archive may bring (a replication's request): a
    # sender that adds others is refused, as it could otherwise replace any repository.
    sources: frozenset[str] | None = None
    id: None = None  # recorded imports name no importer


def under_prefix(header: layout.Header, prefix: str) -> layout.Header:
    """The header with every distribution's base path under `prefix`."""
    prefix = prefix.strip("/")
    entries = [entry.model_copy(update={"distributions": [
        d.model_copy(update={"base_path": f"{prefix}/{d.base_path.strip('/')}"})
        for d in entry.distributions]}) for entry in header.repositories]
    return header.model_copy(update={"repositories": entries})


@contextlib.contextmanager
def frozen_heap():
    """The objects alive before the block out of the cycle collector's way while it runs.
    An import keeps tens of thousands of new objects alive (units, rows), so full
    collections come often, and each one walked every module, class and function the
    process had loaded: 0.5 of 0.75 s spent collecting in an import of 10,000 units, 0.14
    s with this. What the block frees is freed as ever; what was alive before is only
    collected after it (`gc.unfreeze`)."""
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()


class ArchiveImport:
    """One walk over an archive: a check (`dry_run`) or the import itself. `importer`: an
    Importer, or ImportRules; `base_path_prefix`: distributions serve under it;
    `after_apply(session, targets)`: more checks and records in the import's transaction."""

    def __init__(self, runtime: Runtime, importer: Importer | ImportRules,
                 reader: ArchiveReader, *, source: str, dry_run: bool, progress: Progress,
                 base_path_prefix: str = "",
                 after_apply: Callable[[Session, list[Target]], None] | None = None) -> None:
        self.runtime, self.importer, self.reader = runtime, importer, reader
        self.source, self.dry_run, self.progress = source, dry_run, progress
        self.base_path_prefix, self.after_apply = base_path_prefix, after_apply
        self.storage = runtime.storage
        self.bytes_to_write = self.bytes_written = self.artifacts_present = 0
        self.in_archive: set[str] = set()  # a check remembers what the archive brings
        self._pending: dict[str, int] = {}  # held here already, to record
        self._budget: int | None = None
        self.staged: StagedImport | None = None

    def run(self) -> dict[str, Any]:
        with frozen_heap():
            return self._run()

    def _run(self) -> dict[str, Any]:
        if self.dry_run:
            return self._walk()
        recover(self.runtime.db, self.storage)  # what a killed import left unrecorded
        self.staged = StagedImport(self.runtime.db, self.storage)
        try:
            return self._walk()
        except BaseException as exc:
            if not isinstance(exc, OutOfSpace):  # else the space goes back: nothing is kept
                self._keep_vouched()
            raise
        finally:  # whatever else was staged goes
            self.staged.discard()

    def _keep_vouched(self) -> None:
        """After a failure: record what was vouched for, so a rerun reuses it."""
        try:
            self._record_pending()
            self.staged.promote(below=self.reader.source.vouched)
        except Exception:  # the failure that brought us here is the one to report
            log.warning("an interrupted import could not record what it stored",
                        exc_info=True)

    def _walk(self) -> dict[str, Any]:
        started = time.monotonic()
        streamed = self.reader.toc is None
        if not streamed:  # chunk files: their table of contents is checked before reading
            signed_by = self._verify(self.reader.toc)
        header = self.reader.header()
        if self.base_path_prefix.strip("/"):
            header = under_prefix(header, self.base_path_prefix)
        with self.runtime.db.read() as session:
            self.targets = resolve_targets(session, self.runtime.plugins, self.importer,
                                           header)
        # What each new version's state would be: a check proves the digests as the import's
        # final transaction does (a full import replaces everything; an incremental applies
        # onto the destination's newest version).
        self.expected = [LtHash(t.current_state if t.entry.base_digest else None)
                         for t in self.targets]
        self._artifacts(header)
        for member in self.reader.repository_units():
            self._units(member)
        toc = self.reader.finish()
        if streamed:  # a stream's table of contents is its last member
            signed_by = self._verify(toc)
        if self.dry_run:
            self._check_digests()
            return self._plan(header, signed_by)
        self.staged.promote()  # every chunk is vouched for now: the rest, then the units
        self._record_units()
        with self.runtime.db.write() as session:
            self._apply(session)
            plan = self._plan(header, signed_by)
            record = Import(importer_id=self.importer.id, export_uuid=header.export_id,
                            source=self.source, incremental=header.incremental,
                            signed_by=signed_by, plan=plan, bytes_written=self.bytes_written,
                            duration_seconds=time.monotonic() - started)
            session.add(record)
            session.flush()
            plan["import"] = record.id
        return plan

    def _verify(self, toc: dict[str, Any]) -> str | None:
        return signing.verify(toc, self.importer.trusted_keys or [],
                              required=self.importer.require_signature)

    # -- artifacts ----------------------------------------------------------------------------

    def _artifacts(self, header: layout.Header) -> None:
        done = 0
        self.progress("artifacts", 0, header.artifact_bytes)
        for member in self.reader.artifacts():
            if self.storage.exists(member.sha256):
                self.artifacts_present += 1
                self._check_present_size(member)
                self._rehash(member)  # held here, but the archive's bytes must be right too
                if not self.dry_run:
                    self._pending[member.sha256] = member.size
            else:
                self.bytes_to_write += member.size
                if self.dry_run:
                    self._rehash(member)
                else:
                    self._store(member)
            if self.dry_run:
                self.in_archive.add(member.sha256)
            else:
                if len(self._pending) >= STORE_BATCH:
                    self._record_pending()
                source = self.reader.source
                self.staged.promote(below=source.vouched, filling=source.chunk)
            done += member.size
            self.progress("artifacts", done, header.artifact_bytes)
        if not self.dry_run:
            self._record_pending()

    def _check_present_size(self, member) -> None:
        """Bytes already stored were verified; the archive's member must have their size
        (the size recorded is the member's)."""
        with self.storage.open(member.sha256) as stored:
            size = stored.seek(0, os.SEEK_END)
        if size != member.size:
            raise BadArchive(f"artifact {member.sha256} has {member.size} bytes in the archive, "
                             f"but the verified bytes with that digest here have {size}: the "
                             "archive is damaged", code="digest_mismatch",
                             details={"artifact": member.sha256})

    def _rehash(self, member) -> None:
        digest = hashlib.sha256()
        while block := member.read(BLOCK):
            digest.update(block)
        if digest.hexdigest() != member.sha256:
            raise BadArchive(f"artifact {member.sha256} holds bytes with sha256 "
                             f"{digest.hexdigest()}: the archive is damaged",
                             code="digest_mismatch", details={"artifact": member.sha256})

    def _store(self, member) -> None:
        """Stage the member's bytes, verified, in the group of the chunk they end in."""
        self._make_room(member.size)
        source = self.reader.source
        try:
            if member.size <= SMALL:
                data = member.read(member.size)
                self.staged.put_bytes(data, member.sha256, source.chunk)
            else:
                with self.staged.writer(lambda: source.chunk) as writer:
                    while block := member.read(BLOCK):
                        writer.write(block)
                    writer.commit(member.sha256)
        except PalletError as exc:
            if exc.code == "digest_mismatch":
                raise BadArchive(f"artifact {member.sha256} of the archive is damaged: "
                                 f"{exc.message}", code="digest_mismatch",
                                 details={"artifact": member.sha256}) from None
            raise
        except OSError as exc:
            kind = OutOfSpace if exc.errno in (errno.ENOSPC, errno.EDQUOT) else PalletError
            raise kind(f"storing artifact {member.sha256} failed: {exc.strerror or exc}; "
                       "nothing was imported", code=None if kind is OutOfSpace else
                       "storage_failed", details={"artifact": member.sha256}) from None
        self.bytes_written += member.size

    def _make_room(self, size: int) -> None:
        """Stop before the disk fills: keep the configured reserve free."""
        if self._budget is None or self._budget < size:
            free = shutil.disk_usage(self.storage.root).free
            self._budget = free - self.runtime.settings.import_reserve_bytes
            if self._budget < size:
                raise OutOfSpace(
                    f"the artifact store has {free} bytes free; storing the next artifact "
                    f"({size} bytes) would leave less than the reserve of "
                    f"{self.runtime.settings.import_reserve_bytes} (import_reserve_bytes). "
                    "Nothing was imported; free space and run the import again (what it "
                    "recorded so far is reused)", details={"free": free, "needed": size})
        self._budget -= size

    def _record_pending(self) -> None:
        if not self._pending:
            return
        self.storage.flush()  # durable before recorded
        with self.runtime.db.write() as session:
            record_artifacts(session, self._pending)
        self._pending = {}

    # -- units --------------------------------------------------------------------------------

    def _units(self, member: UnitsMember) -> None:
        target = self.targets[member.index]
        self.progress(f"units of {target.destination}", 0, None)
        if target.up_to_date:
            return  # the destination holds this version already: nothing to record
        if member.kind == "removed":
            with self.runtime.db.read() as session:
                ids = find_content(session, member.lines)
            missing = len(set(member.lines) - set(ids))
            if missing:
                raise Conflict(f"the archive removes {missing} unit(s) from {target.destination} "
                               "that this server does not hold", code="wrong_base")
            target.remove_ids.extend(ids.values())
            self.expected[member.index].remove(member.lines)
            return
        units = [self._unit(target, unit, member, number)
                 for number, unit in enumerate(member.lines, start=1)]
        shas = {sha for unit in units for _, sha, _ in unit.files}
        if self.dry_run:
            with self.runtime.db.read() as session:
                known = set(find_artifacts(session, shas))
            self._require(shas - known - self.in_archive, target)
            self.expected[member.index].add(unit.digest for unit in units)
            return
        self.staged.spool(member.index, units)  # recorded once the archive is vouched for

    def _record_units(self) -> None:
        for index, units in self.staged.spooled(layout.UNITS_PER_MEMBER):
            target = self.targets[index]
            shas = {sha for unit in units for _, sha, _ in unit.files}
            with self.runtime.db.write() as session:
                artifacts = find_artifacts(session, shas)
                self._require(shas - set(artifacts), target)
                ids = record_units(session, self.runtime.plugins, units, artifacts)
            target.add_ids.extend(ids[unit.digest] for unit in units)

    def _unit(self, target: Target, unit: dict[str, Any], member: UnitsMember,
              number: int) -> NewUnit:
        plugins = self.runtime.plugins
        where = f"repository {target.entry.name}, unit {number} of its member {member.index}"
        if unit["type"] not in plugins.repository_type(target.entry.type).content_types:
            raise BadArchive(f"{where}: a {target.entry.type} repository cannot hold content "
                             f"of type {unit['type']!r}")
        try:
            content_type, model = validate_unit(plugins, unit["type"], unit["fields"])
        except Invalid as exc:
            raise BadArchive(f"{where}: {exc.message}", details=exc.details) from None
        files = {path: sha.lower() for path, sha in content_type.artifacts(model).items()}
        if files != {path: str(sha).lower() for path, sha in unit["artifacts"].items()}:
            raise BadArchive(f"{where}: its files do not match its fields")
        data = model.model_dump(mode="json")
        return NewUnit(unit["type"], unit_identity(unit["type"], content_type.key_fields, data),
                       data, tuple((path, files[path], None) for path in sorted(files)))

    def _require(self, missing: set[str], target: Target) -> None:
        if missing:
            example = sorted(missing)[0]
            raise Invalid(f"{len(missing)} file(s) of {target.entry.name} are neither in the "
                          f"archive nor stored here (e.g. sha256 {example}): the export "
                          "expected this server to hold its base", code="missing_artifacts",
                          details={"missing": sorted(missing)[:20]})

    # -- the plan and the one transaction -----------------------------------------------------

    def _check_digests(self) -> None:
        for target, state in zip(self.targets, self.expected):
            entry = target.entry
            if not target.up_to_date and state.digest != entry.digest:
                raise Conflict(f"importing {entry.name} into {target.destination!r} would give "
                               f"content digest {state.digest}, not the exported "
                               f"{entry.digest}: the archive's units do not make the version "
                               "its header names", code="digest_mismatch",
                               details={"destination": target.destination,
                                        "digest": state.digest, "exported": entry.digest})

    def _plan(self, header: layout.Header, signed_by: str | None) -> dict[str, Any]:
        free = shutil.disk_usage(self.storage.root).free
        plan = {"export_id": header.export_id, "exporter": header.exporter,
                "format_version": header.format_version, "incremental": header.incremental,
                "signed_by": signed_by, "dry_run": self.dry_run,
                "repositories": [target.plan() for target in self.targets],
                "artifacts": header.artifacts, "artifact_bytes": header.artifact_bytes,
                "artifacts_present": self.artifacts_present,
                "bytes_to_write": self.bytes_to_write, "free_bytes": free}
        if self.dry_run:
            reserve = self.runtime.settings.import_reserve_bytes
            if self.bytes_to_write > free - reserve:
                raise OutOfSpace(f"the import would write {self.bytes_to_write} bytes; the "
                                 f"artifact store has {free} free and keeps a reserve of "
                                 f"{reserve} (import_reserve_bytes)", details=plan)
        return plan

    def _apply(self, session: Session) -> None:
        plugins, storage = self.runtime.plugins, self.runtime.storage
        for target in self.targets:
            entry = target.entry
            if target.repository_id is None:
                repository = repositories.create_repository(
                    session, plugins, name=target.destination, type=entry.type,
                    description=entry.description, autopublish=entry.autopublish,
                    publish_options=entry.publish_options)
            else:
                repository = session.get(Repository, target.repository_id)
                if repository is None or latest_version(session, repository).digest \
                        != target.current_digest:
                    raise Conflict(f"repository {target.destination!r} changed while the "
                                   "archive was read; run the import again")
            version = None
            if not target.up_to_date:
                version = create_version(session, plugins, repository,
                                         add=target.add_ids, remove=target.remove_ids,
                                         remove_all=entry.base_digest is None)
                result = version or latest_version(session, repository)
                if result.digest != entry.digest:
                    raise Conflict(f"importing {entry.name} into {target.destination!r} gave "
                                   f"content digest {result.digest}, not the exported "
                                   f"{entry.digest}; nothing was imported",
                                   code="digest_mismatch")
                autopublish(session, plugins, storage, repository, version)
                target.created_version = version.number if version else None
            newest = version or latest_version(session, repository)
            for options in entry.publications:  # the source's, so the same paths are served
                publish(session, plugins, storage, repository, newest, options)
            if self.importer.distributions:
                distribute(session, repository, entry)
        if self.after_apply is not None:
            self.after_apply(session, self.targets)
