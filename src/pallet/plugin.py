"""What a content-type plugin sees of Pallet: the one module plugins import.

A plugin is a `Plugin` object named by an entry point in the group `pallet.plugins.v2`. It
declares content types (a pydantic model of a unit's fields, which of them form the natural
key and the repository key, and which artifacts a unit has) and repository types (which
content types they hold, how to read a remote, and how to render a publication). The
built-in `file` and `rpm` types register this way too. The exports are pinned by a test.

Version 2 (after 1): a sync reads a remote as a conversation (`read_remote` asks a
`RemoteReader` for as many files as it needs, verified and decompressed) instead of being
handed one index file, and a publisher is told the counts of what it will write. Later in 2,
without breaking a plugin written before: a repository type may declare `sync_options`, which
its remotes store and its `read_remote` reads as `RemoteReader.options`; and a remote's unit
may name a file by another checksum than sha256 (`RemoteFile.checksum`), its fields
completed once the file is fetched (`RemoteUnit.complete`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO, Callable, ClassVar, Iterable, Iterator, Mapping, Protocol

from pydantic import BaseModel, ConfigDict

from pallet.errors import Invalid
from pallet.paths import validate_relative_path

API_VERSION = 2
ENTRY_POINT_GROUP = "pallet.plugins.v2"
COMMANDS_ENTRY_POINT_GROUP = "pallet.commands.v2"


class UnitModel(BaseModel):
    """Base for the fields of a content unit. Unknown fields are refused."""

    model_config = ConfigDict(extra="forbid", frozen=True)


@dataclass(frozen=True)
class Reference:
    """A unit that another unit names (an advisory its packages, a group its package names).

    `fields` are either the whole repository key of `type` (a package's name, epoch, version,
    release and arch: one definite unit of a version), or, with `exact=False`, the leading
    fields of one of its `indexes` (a package name: any unit of that name). Exact references
    are checked when a version is made; both kinds are followed by copy."""

    type: str
    fields: Mapping[str, str]
    exact: bool = True


@dataclass(frozen=True)
class ContentType:
    """A kind of content unit.

    - `model`: the unit's fields, validated on the way in.
    - `key_fields`: the fields that identify a unit; equal keys mean the same unit everywhere.
    - `artifacts`: the unit's files, as {relative path: sha256}.
    - `repository_key`: the fields of which a repository version holds one unit per value
      (a file's relative path; a package's name, epoch, version, release and arch): adding a
      unit whose repository key is present replaces the unit that has it. Empty means the
      natural key, so units never replace each other.
    - `from_file(path, sha256)`: the fields of the unit an uploaded file is, read from the
      file itself (an RPM's header), or Invalid saying why it is not one (None: units of
      this type are described by their uploader, as `file` units are).
    - `references(unit)`: the units `unit` names (see `Reference`); stored with the unit.
    - `indexes`: field lists the database indexes for this type (string fields), so that a
      look-up by them, or by their leading fields, is an index search among millions.
    """

    name: str
    model: type[UnitModel]
    key_fields: tuple[str, ...]
    artifacts: Callable[[UnitModel], dict[str, str]]
    repository_key: tuple[str, ...] = ()
    from_file: Callable[[Path, str], dict[str, Any]] | None = None
    references: Callable[[UnitModel], Iterable[Reference]] | None = None
    indexes: tuple[tuple[str, ...], ...] = ()

    @property
    def repository_key_fields(self) -> tuple[str, ...]:
        return self.repository_key or self.key_fields


@dataclass(frozen=True)
class Checksum:
    """A digest a remote announces for a file: a hashlib algorithm name and its hex value
    (yum's "sha" is taken as sha1)."""

    algorithm: str
    value: str


@dataclass(frozen=True)
class RemoteFile:
    """One file of a unit on a remote: where to fetch it and what its bytes must be.

    `sha256` is the digest Pallet stores the file by. A remote that announces another one
    only (an old yum repository's sha1 or md5) gives `sha256=""` and that digest as
    `checksum` (sha1, md5, sha224, sha384 or sha512); its unit then needs a
    `RemoteUnit.complete`. Only the immediate policy can sync such a file: the sync fetches
    it, verifies it by `checksum` and stores it by the sha256 of its bytes."""

    url: str
    sha256: str
    size: int | None = None
    checksum: Checksum | None = None


class RemoteReader(Protocol):
    """A remote as a repository type's sync reads it, through the core's downloader (its TLS,
    proxy, auth, retries and timeouts). Called from a worker thread, never the event loop.

    - `url`: the remote's URL, as its owner gave it.
    - `resolve(href)`: `href` resolved against `url`, read as a directory when it ends in '/'.
    - `fetch(href, checksum=, size=, decompress=)`: the file at `resolve(href)` in a local
      temporary file, which the core deletes when the sync ends. Its bytes as fetched are
      verified against `checksum` and `size` when given; with `decompress`, the file is
      decompressed by its name's suffix (`.gz`, `.bz2`, `.xz`, `.zst`, else as is). Both
      the fetched and the decompressed file are at most the `max_index_size` setting.
      Failures raise `Invalid` or a download error naming the URL. With `fingerprint`, the
      file vouches for everything the remote holds (a repomd.xml names every other file by
      its checksum): if it is byte for byte the one the repository's last sync from this
      remote read, onto the version that sync left, with the same policy and mode, the sync
      ends there with no new version (not with the `immediate` policy, whose syncs also
      bring back bytes missing from the store, nor when the remote's `options` differ from
      those of that sync).
    - `options`: the remote's sync options, validated, as the repository type's
      `sync_options` model (`SyncOptions()` for a type that declares none). `read_remote`
      applies them: leaving out what they exclude is its job, not the core's.
    """

    url: str
    options: SyncOptions

    def resolve(self, href: str) -> str: ...

    def fetch(self, href: str, *, checksum: Checksum | None = None, size: int | None = None,
              decompress: bool = False, fingerprint: bool = False) -> Path: ...


@dataclass(frozen=True)
class RemoteUnit:
    """A unit a remote's index announces: its fields and its files by relative path. The
    fields may be given as the type's model, already validated (the sync then does not
    validate them again: a quarter of a package's cost).

    `complete(sha256s)`, for a unit some of whose files are announced without a sha256
    (`RemoteFile.sha256 == ""`): its fields once those files are fetched and verified, given
    their sha256 by relative path (an RPM package's `pkgid` is its file's sha256). `fields`
    are then only what is known before (the sync uses `complete`'s answer instead); Invalid
    if the unit cannot be.

    `key`, the unit's natural key as its stored JSON has it (`key_fields` only), lets the
    type give `fields` as a function that builds them: the sync looks the key up first and
    calls it only for a unit the server does not hold, so a re-sync pays for what changed
    (building and validating a package's fields is most of its cost). A key that differs
    from what the built fields give (not normalized as the model would) only costs that."""

    type: str
    fields: dict[str, Any] | UnitModel | Callable[[], dict[str, Any] | UnitModel]
    files: dict[str, RemoteFile]
    complete: Callable[[Mapping[str, str]], dict[str, Any] | UnitModel] | None = None
    key: Mapping[str, Any] | None = None


@dataclass(frozen=True)
class PublishedFile:
    relative_path: str
    sha256: str
    size: int | None


@dataclass(frozen=True)
class PublishedUnit:
    """A unit of the version being published, as a publisher sees it."""

    type: str
    fields: dict[str, Any]
    files: tuple[PublishedFile, ...]


class PublishedUnits(Protocol):
    """The units a publisher writes: an iterable (streamed, in no particular order, possibly
    millions long: never hold it all) that knows its counts before it is read."""

    counts: Mapping[str, int]  # content type -> number of units

    def __iter__(self) -> Iterator[PublishedUnit]: ...


class Signer(Protocol):
    """Signs a publication's metadata with an OpenPGP key (a yum repository's repomd.xml).

    - `sign(data)`: a detached, ASCII-armored OpenPGP signature of `data` (what
      `gpg --detach-sign --armor` writes), as bytes.
    - `public_key()`: the ASCII-armored public key that verifies it, for publishing beside
      the signature so clients can import it.

    Nothing in Pallet provides a signer yet: signing keys come with access control (the next
    issue), which will choose a publication's signer and make it part of what identifies
    the publication. Until then `MetadataOutput.signer` is None for every publication the
    server makes; tests hand `publications.service.render` a signer of their own.
    """

    def sign(self, data: bytes) -> bytes: ...

    def public_key(self) -> bytes: ...


class MetadataOutput(Protocol):
    """Where a publisher writes its generated files; each is stored as a verified artifact.
    `signer` signs them when the publication is signed, and is None when it is not."""

    signer: Signer | None

    def open(self, relative_path: str) -> BinaryIO: ...


class PublishOptions(BaseModel):
    """Base for a repository type's publish options. Unknown options are refused."""

    model_config = ConfigDict(extra="forbid", frozen=True)


@dataclass(frozen=True)
class Closure:
    """What a repository type adds to a copy so that the copied units work where they go: the
    ids of the further units to copy, and what cannot be satisfied, each in a sentence."""

    add: frozenset[int]
    unresolved: tuple[str, ...] = ()


# dependencies(available, selected, present): the closure of the `selected` units (ids among
# `available`, the source version's units as (id, type, fields), streamed) given `present`
# (the destination's units, likewise): e.g. an RPM's dependencies, solved by libsolv.
Dependencies = Callable[[Iterable[tuple[int, str, dict[str, Any]]], frozenset[int],
                         Iterable[tuple[int, str, dict[str, Any]]]], Closure]


class SyncOptions(BaseModel):
    """Base for a repository type's sync options: what its remotes may say about which of
    the remote's units a sync takes (`rpm`: skip source packages, keep the newest N
    versions). A remote stores them; they are validated against this model when the remote
    is created or changed, and handed to `read_remote` as `RemoteReader.options`. Unknown
    options are refused; every option needs a default (a remote that gives none syncs
    everything). A list option may be given as comma-separated text too (the core splits
    it before validating)."""

    model_config = ConfigDict(extra="forbid", frozen=True)


# read_remote(remote): the units a remote holds, read through `remote` (as many files as the
# type's format needs). Raises Invalid, naming the file and what is wrong, on bad metadata.
ReadRemote = Callable[[RemoteReader], Iterator[RemoteUnit]]
# publish(units, options, output): write the publication's metadata files.
Publish = Callable[[PublishedUnits, PublishOptions, MetadataOutput], None]


@dataclass(frozen=True)
class ServedRepository:
    """What the content app serves at one distribution, as a generated file sees it.

    - `distribution`: the distribution's name (letters, digits, '.', '_', '-').
    - `url`: the distribution's absolute URL as the client reaches it, ending in '/'
      (from the `content_origin` setting, else the request's scheme and Host header, which
      the content app has checked to be a plain host[:port]).
    - `repository` / `version`: the repository's name and the number of the version served.
    - `metadata`: the relative paths of the served publication's metadata files (empty when
      a version is served bare, without a publication).
    """

    distribution: str
    url: str
    repository: str
    version: int
    metadata: frozenset[str]


@dataclass(frozen=True)
class GeneratedFile:
    """A file the content app writes for each distribution of a repository type, at request
    time, beside what the publication holds (rpm's `config.repo`, a dnf repo file naming the
    distribution's URL). `render(served)` returns its bytes, or None where the type has no
    such file (a version served without its metadata): then the path is 404. It runs in a
    thread of the content app on every GET and HEAD (its answer depends on the URL the
    client used), so it must be quick and touch nothing outside `served`; the answer is sent
    with `media_type`, its length and an ETag of its sha256. A file in the publication at the
    same path is refused at publish (see `RepositoryType.generated_files`)."""

    render: Callable[[ServedRepository], bytes | None]
    media_type: str = "text/plain; charset=utf-8"


@dataclass(frozen=True)
class RepositoryType:
    """A kind of repository.

    - `read_remote`: reads a remote's units (None: this type cannot sync).
    - `sync_options`: the model of its remotes' sync options (`SyncOptions`: none).
    - `publish_options` / `publish`: the publish options' model and the publisher (None:
      this type is served without publications, straight from versions).
    - `pass_through`: publications serve the units' files at their own relative paths.
    - `dependencies`: what a copy with dependencies adds (None: the type has none).
    - `generated_files`: {relative path: GeneratedFile} served at each distribution of
      the type. A publication that would hold a file at one of these paths (a metadata file,
      or a content file of a pass-through type), or a folder of that name, is refused at
      publish (`path_collision`), so a path means one thing.
    """

    name: str
    content_types: tuple[str, ...]
    description: str = ""
    read_remote: ReadRemote | None = None
    sync_options: type[SyncOptions] = SyncOptions
    publish_options: type[PublishOptions] = PublishOptions
    publish: Publish | None = None
    pass_through: bool = True
    dependencies: Dependencies | None = None
    generated_files: Mapping[str, GeneratedFile] = field(default_factory=dict, hash=False)


@dataclass(frozen=True)
class Plugin:
    """A plugin: its types, and the routes it adds for type-specific operations: `routes()`
    gives a FastAPI `APIRouter` served at `/api/v1/<name>/…` (use `pallet.api.deps` for the
    core's authentication), called once when the server starts.

    Its CLI commands are a Typer app named by an entry point of the group
    `COMMANDS_ENTRY_POINT_GROUP` under the plugin's name, run as `pallet <name> …` (the CLI
    is a client of the API: it never loads plugins, only their commands)."""

    name: str
    content_types: tuple[ContentType, ...] = ()
    repository_types: tuple[RepositoryType, ...] = ()
    api_version: ClassVar[int] = API_VERSION
    description: str = field(default="")
    routes: Callable[[], Any] | None = None


__all__ = ["API_VERSION", "COMMANDS_ENTRY_POINT_GROUP", "ENTRY_POINT_GROUP", "Checksum",
           "Closure", "ContentType", "Dependencies", "GeneratedFile", "Invalid",
           "MetadataOutput", "Plugin", "Publish", "PublishOptions", "PublishedFile",
           "PublishedUnit", "PublishedUnits", "ReadRemote", "Reference", "RemoteFile",
           "RemoteReader", "RemoteUnit", "RepositoryType", "ServedRepository", "Signer",
           "SyncOptions", "UnitModel", "validate_relative_path"]
