"""The plan stage of a sync: the units a remote announces, validated, in batches, each with
what exists already and what its files need.

`read_units` turns the repository type's `RemoteUnit`s into `SyncUnit`s (type checked,
fields validated, files compared with the fields, URLs checked, identity computed); a unit
some of whose files the remote announces by another checksum than sha256 only waits as a
`Deferred` one until they are fetched, then its type's `complete` makes it whole
(`completed`). A unit announced with its key (`RemoteUnit.key`) is looked up first, LOOKUP at
a time: one the server holds, with the same files, becomes a `SyncUnit` that names its
content id and has no fields; only the others have their fields built and validated. `plan_batch` takes the next batch of them and finds, in one read session,
the artifacts recorded already, the bytes stored without a row, and the files to download.

A `SyncUnit` keeps its fields as JSON text, not as the dict it is stored from: a batch waits
for its files and its turn to be written, and several are alive at once; the text is a third
of the dict's memory, and pydantic writes it at a tenth of `model_dump(mode="json")`'s cost.
Runs in worker threads, never on the event loop.
"""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Iterator, Mapping
from urllib.parse import urlsplit

from sqlalchemy import select

from pallet.content.bulk import NewUnit, among_text, find_artifacts, text_batches
from pallet.content.models import Content, ContentArtifact as CA
from pallet.content.identity import unit_identity
from pallet.content.service import validate_unit
from pallet.errors import Invalid
from pallet.plugin import RemoteFile, RemoteUnit, RepositoryType, UnitModel
from pallet.plugins import Registry
from pallet.remotes.downloader import announced_algorithm
from pallet.remotes.models import RemoteArtifact as RA
from pallet.remotes.reader import RemoteFiles
from pallet.runtime import Runtime

BATCH = 2000  # units at most in a batch
# ... and at most this much of their fields' JSON. Batches of 2,000 packages held as dicts
# (15 KB each; 4 KB as JSON) made the on-demand sync of 20,000 packages peak at 260 MB RSS;
# as JSON text, 1,000 a batch (4 MB), it peaks at 180-190 MB (bench/rpm.py). Small units
# (a file's 200 bytes) still come 2,000 at a time: every batch costs a flush of the store
# and a transaction.
BATCH_BYTES = 4 << 20
LOOKUP = 500  # units announced with their key, looked up together


@dataclass(frozen=True)
class SyncUnit:
    """A validated unit of the remote: its identity digest, its fields as stored (JSON text)
    and its files by relative path; or, for a unit the server holds, its `content_id` and
    no fields."""

    type: str
    digest: str
    data: str
    files: tuple[tuple[str, RemoteFile], ...]
    content_id: int | None = None
    recorded: bool = False  # held, and this remote's rows for its files are up to date

    def new_unit(self) -> NewUnit:
        return NewUnit(self.type, self.digest, json.loads(self.data),
                       tuple((path, f.sha256, f.size) for path, f in self.files))


@dataclass(frozen=True)
class Deferred:
    """A unit whose fields are known only once some of its files are fetched (announced by
    sha1 or md5 only, their sha256 unknown): `remote_unit.complete` makes them."""

    remote_unit: RemoteUnit

    @property
    def unknown(self) -> dict[str, RemoteFile]:
        """Its files of unknown sha256, by relative path."""
        return {path: f for path, f in self.remote_unit.files.items() if not f.sha256}


class PolicyRefused(Invalid):
    """A unit the remote's policy cannot sync (not an error of the index)."""


class IndexInvalid(Invalid):
    """A unit of the index that is not valid, named by the index file it came from."""

    @classmethod
    def of(cls, error: Invalid, url: str) -> IndexInvalid:
        return cls(f"the index {url} is not valid: {error.message}",
                   details={**error.details, "url": url})


@dataclass(frozen=True)
class Batch:
    """The next units, and what their files need: `artifacts` recorded already (sha256 ->
    (id, size)), `stored` bytes in the store without a row (sha256 -> size), `missing`
    files to download (sha256 -> file; immediate policy only), and `deferred` units, whose
    files of unknown sha256 are downloaded (by URL) before they become units."""

    units: list[SyncUnit]
    deferred: list[Deferred] = field(default_factory=list)
    artifacts: dict[str, tuple[int, int]] = field(default_factory=dict)
    stored: dict[str, int] = field(default_factory=dict)
    missing: dict[str, RemoteFile] = field(default_factory=dict)

    @property
    def size(self) -> int:
        return len(self.units) + len(self.deferred)


class Validator:
    """What a remote's unit must be to enter this sync: a type the repository holds, fields
    its model accepts, files matching the fields, URLs of the remote's schemes."""

    def __init__(self, plugins: Registry, repository_type: RepositoryType, *,
                 schemes: tuple[str, ...], immediate: bool) -> None:
        self.plugins, self.repository_type = plugins, repository_type
        self.schemes, self.immediate = schemes, immediate

    def unit(self, remote_unit: RemoteUnit, fields: dict[str, Any] | UnitModel | None = None
             ) -> SyncUnit:
        """`remote_unit` validated (with `fields` instead of its own, once completed)."""
        fields = remote_unit.fields if fields is None else fields
        if callable(fields):  # built only now: the server does not hold the unit
            fields = fields()
        content_type = self._content_type(remote_unit)
        unit = fields
        if not isinstance(unit, content_type.model):  # a dict, or another type's model
            content_type, unit = validate_unit(self.plugins, remote_unit.type, _as_dict(fields))
        key = unit.model_dump(mode="json", include=set(content_type.key_fields))
        expected = {path: sha.lower() for path, sha in content_type.artifacts(unit).items()}
        announced = {path: file.sha256.lower()
                     for path, file in remote_unit.files.items()}
        if expected != announced:
            raise Invalid(f"the files listed for unit {key} do not match its fields")
        files = []
        for path in sorted(expected):
            file = self._checked_url(path, remote_unit.files[path])
            if file.sha256 != expected[path]:
                file = dataclasses.replace(file, sha256=expected[path])
            files.append((path, file))
        return SyncUnit(remote_unit.type, unit_identity(remote_unit.type,
                                                        content_type.key_fields, key),
                        unit.model_dump_json(), tuple(files))

    def held(self, remote_unit: RemoteUnit, held: Held, digest: str) -> SyncUnit:
        """A unit the server holds, by its key (`digest`), with these files."""
        files = tuple((path, self._checked_url(path, remote_unit.files[path]))
                      for path in sorted(remote_unit.files))
        return SyncUnit(remote_unit.type, digest, "", files, held.content_id, held.recorded)

    def key_digest(self, remote_unit: RemoteUnit) -> str | None:
        """The identity its announced key gives, None if the key lacks a key field."""
        content_type = self._content_type(remote_unit)
        key = remote_unit.key or {}
        if any(name not in key for name in content_type.key_fields):
            return None
        return unit_identity(remote_unit.type, content_type.key_fields, key)

    def deferred(self, remote_unit: RemoteUnit) -> Deferred:
        """A unit with files of unknown sha256: only the immediate policy can take it."""
        self._content_type(remote_unit)
        deferred = Deferred(remote_unit)
        for path, file in deferred.unknown.items():
            if file.checksum is None or remote_unit.complete is None:
                raise Invalid(f"{path!r} is announced without a sha256, and without a "
                              "checksum and a way to complete its unit once fetched")
            announced_algorithm(file.url, file.checksum)  # one hashlib knows
            self._checked_url(path, file)
            if not self.immediate:
                raise PolicyRefused(
                    f"the remote announces {path!r} by its {file.checksum.algorithm[:20]} "
                    "only, so Pallet cannot know the sha256 it stores files by before "
                    "fetching them: sync this remote with the immediate policy",
                    details={"url": file.url[:200], "algorithm": file.checksum.algorithm[:20]})
        return deferred

    def _content_type(self, remote_unit: RemoteUnit):
        if remote_unit.type not in self.repository_type.content_types:
            raise Invalid(f"it lists a unit of type {remote_unit.type!r}, which a "
                          f"{self.repository_type.name} repository cannot hold")
        return self.plugins.content_type(remote_unit.type)

    def _checked_url(self, path: str, file: RemoteFile) -> RemoteFile:
        if not _allowed_scheme(file.url, self.schemes):
            raise Invalid(f"the URL {file.url[:200]!r} of {path!r} is not allowed from "
                          f"this remote (use {' or '.join(self.schemes)})")
        return file


def read_units(validator: Validator, remote_units: Iterable[RemoteUnit],
               remote: RemoteFiles, held: Callable[[dict[str, RemoteUnit]], dict[str, Held]]
               ) -> Iterator[SyncUnit | Deferred]:
    """The remote's units, validated; an error in the index names the file being read.
    `held(units by digest)` says which of them the server holds with the same files
    (`held_units`)."""
    keyed: dict[str, tuple[RemoteUnit, str]] = {}  # digest -> (unit, the file it came from)
    try:
        for remote_unit in remote_units:
            if any(not file.sha256 for file in remote_unit.files.values()):
                yield validator.deferred(remote_unit)
            elif remote_unit.key is not None and \
                    (digest := validator.key_digest(remote_unit)) is not None:
                keyed[digest] = (remote_unit, remote.last_url)
                if len(keyed) == LOOKUP:
                    yield from _looked_up(validator, keyed, held)
                    keyed = {}
            else:
                yield validator.unit(remote_unit)
        yield from _looked_up(validator, keyed, held)
    except (PolicyRefused, IndexInvalid):
        raise
    except Invalid as exc:
        if exc.code != "invalid":  # a digest or size the remote's own metadata refutes
            raise
        raise IndexInvalid.of(exc, remote.last_url) from None


def _looked_up(validator: Validator, keyed: dict[str, tuple[RemoteUnit, str]],
               held: Callable[[dict[str, RemoteUnit]], dict[str, Held]]
               ) -> Iterator[SyncUnit]:
    """Units announced with their key: those held as they are, the others built."""
    if not keyed:
        return
    found = held({digest: unit for digest, (unit, _) in keyed.items()})
    for digest, (remote_unit, url) in keyed.items():
        if digest in found:
            yield validator.held(remote_unit, found[digest], digest)
            continue
        try:
            yield validator.unit(remote_unit)
        except Invalid as exc:  # named by the file it came from, which the reader has left
            if exc.code != "invalid":
                raise
            raise IndexInvalid.of(exc, url) from None


@dataclass(frozen=True)
class Held:
    """A unit the server holds: its content id, and whether this remote's rows for its
    files already say where they are (the record stage then has nothing to write)."""

    content_id: int
    recorded: bool


def held_units(runtime: Runtime, remote_id: int, units: dict[str, RemoteUnit]
               ) -> dict[str, Held]:
    """Those of `units` (by their key's digest) that the server holds with the files they
    announce (relative path and sha256): a type whose key does not decide its files has the
    others built and checked as new ones are. One statement for a whole look-up."""
    found: dict[str, tuple[int, dict[str, tuple[str, str | None, int | None]]]] = {}
    with runtime.db.read() as session:
        for batch in text_batches(units):
            for digest, content_id, path, sha256, url, size in session.execute(
                    select(Content.digest, Content.id, CA.relative_path, CA.sha256,
                           RA.url, RA.size)
                    .join(CA, CA.content_id == Content.id)
                    .outerjoin(RA, (RA.content_artifact_id == CA.id)
                               & (RA.remote_id == remote_id))
                    .where(among_text(session, Content.digest, batch))):
                found.setdefault(digest, (content_id, {}))[1][path] = (sha256, url, size)
    held = {}
    for digest, (content_id, files) in found.items():
        announced = units[digest].files
        if {path: sha256 for path, (sha256, _, _) in files.items()} == \
                {path: file.sha256.lower() for path, file in announced.items()}:
            held[digest] = Held(content_id, all(
                (url, size) == (announced[path].url, announced[path].size)
                for path, (_, url, size) in files.items()))
    return held


def plan_batch(runtime: Runtime, units: Iterator[SyncUnit | Deferred], *,
               immediate: bool) -> Batch | None:
    """The next batch: what exists, what is stored without a row, what to fetch."""
    taken = _take(units)
    if not taken:
        return None
    batch = Batch([u for u in taken if isinstance(u, SyncUnit)],
                  [u for u in taken if isinstance(u, Deferred)])
    files = {file.sha256: file for unit in batch.units for _, file in unit.files}
    files.update((file.sha256, file) for unit in batch.deferred  # its other files
                 for file in unit.remote_unit.files.values() if file.sha256)
    with runtime.db.read() as session:
        batch.artifacts.update(find_artifacts(session, files))
    if immediate:
        storage = runtime.storage
        for sha256, file in files.items():
            if sha256 in batch.artifacts:
                # Recorded; fetched again if its bytes went missing from the store. One
                # stat per file: 13 µs measured on a busy machine, 1.3 s per 100,000.
                if not storage.exists(sha256):
                    batch.missing[sha256] = file
                continue
            if storage.exists(sha256):  # verified bytes whose row went missing: reuse
                with storage.open(sha256) as stream:
                    batch.stored[sha256] = stream.seek(0, os.SEEK_END)
            else:
                batch.missing[sha256] = file
    return batch


def completed(validator: Validator, batch: Batch,
              fetched: Mapping[str, tuple[str, int]]) -> list[SyncUnit]:
    """The batch's deferred units made whole, now that their files are in (`fetched`:
    URL -> (sha256, size) for the files of unknown sha256)."""
    units = []
    for deferred in batch.deferred:
        remote_unit = deferred.remote_unit
        unknown = deferred.unknown
        sha256s = {path: fetched[file.url][0] for path, file in unknown.items()}
        files = {path: dataclasses.replace(file, sha256=sha256s[path],
                                           size=fetched[file.url][1], checksum=None)
                 if path in unknown else file for path, file in remote_unit.files.items()}
        known = dataclasses.replace(remote_unit, files=files, complete=None)
        units.append(validator.unit(known, remote_unit.complete(sha256s)))
    return units


def _take(units: Iterator[SyncUnit | Deferred]) -> list[SyncUnit | Deferred]:
    """The next BATCH units, fewer if their JSON reaches BATCH_BYTES first."""
    taken: list[SyncUnit | Deferred] = []
    weight = 0
    for unit in units:
        taken.append(unit)
        weight += len(unit.data) if isinstance(unit, SyncUnit) else 0
        if len(taken) == BATCH or weight >= BATCH_BYTES:
            break
    return taken


def _allowed_scheme(url: str, schemes: tuple[str, ...]) -> bool:
    # What precedes the first colon, when it is an allowed scheme, is what urlsplit
    # finds too; anything else gets urlsplit's verdict (it strips spaces, for one).
    colon = url.find(":")
    if colon > 0 and url[:colon].lower() in schemes:
        return True
    return urlsplit(url).scheme.lower() in schemes


def _as_dict(fields) -> dict[str, Any]:
    return fields.model_dump() if isinstance(fields, UnitModel) else fields
