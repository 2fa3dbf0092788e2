"""Where artifact bytes live. The domain sees only `ArtifactStorage`; S3 can come later.

Bytes enter through a `Writer` that hashes while it writes. Nothing is placed under its
digest until the digest has been checked: a temporary file is fsynced, then renamed into
place, so a reader never sees a half-written or unverified artifact.

Temporary files live in a folder of the store object's own (`.tmp/<owner>/`, see
`temporaries`); whoever opens the store next removes those whose owner is dead.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import fcntl
import hashlib
import logging
import os
import re
import secrets
import shutil
import threading
import tempfile
from abc import ABC, abstractmethod
from pathlib import Path
from typing import BinaryIO, Callable, Iterator

from pallet.artifacts.temporaries import JOURNALS, own_folder, remove_dead_temporaries
from pallet.errors import Invalid, PalletError

READ_BLOCK = 1 << 20
_SHA256 = re.compile("[0-9a-f]{64}")
_PREFIX = re.compile("[0-9a-f]{2}")
LAYOUT = "2"  # artifacts at ab/<sha256>; layout 1 (no marker file) had them at ab/cd/<sha256>
log = logging.getLogger(__name__)


class DigestMismatch(Invalid):
    code = "digest_mismatch"


class Writer(ABC):
    """A stream of bytes on their way into the store."""

    sha256: "hashlib._Hash"
    size: int

    @abstractmethod
    def write(self, data: bytes) -> None: ...

    @abstractmethod
    def commit(self, expected_sha256: str | None = None) -> str:
        """Verify and store; return the sha256. On mismatch nothing is stored."""

    @abstractmethod
    def abort(self) -> None: ...

    def __enter__(self) -> "Writer":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        self.abort()


class ArtifactStorage(ABC):
    @abstractmethod
    def writer(self) -> Writer: ...

    @abstractmethod
    def exists(self, sha256: str) -> bool: ...

    @abstractmethod
    def open(self, sha256: str) -> BinaryIO: ...

    @abstractmethod
    def delete(self, sha256: str) -> None: ...

    def read(self, sha256: str, limit: int) -> bytes:
        """Up to `limit` bytes of a (small) artifact, read whole in one go."""
        with self.open(sha256) as stream:
            return stream.read(limit)

    def put_file(self, path: Path, expected_sha256: str | None = None) -> tuple[str, int]:
        """Copy a file into the store, verifying it; return (sha256, size)."""
        with self.writer() as writer, open(path, "rb") as source:
            while block := source.read(READ_BLOCK):
                writer.write(block)
            return writer.commit(expected_sha256), writer.size

    def ingest(self, path: Path, expected_sha256: str,
               progress: Callable[[int], None] = lambda done: None) -> tuple[str, int]:
        """Verify a finished file and take it into the store (it is consumed); return
        (sha256, size). The default copies; a local store moves it instead."""
        sha256, size = self.put_file(path, expected_sha256)
        path.unlink(missing_ok=True)
        return sha256, size

    def put_bytes(self, data: bytes, expected_sha256: str, *, durable: bool = True) -> int:
        """Store small bytes already in memory, verified; return their size. With
        durable=False the caller must call `flush()` before it records the artifact."""
        with self.writer() as writer:
            writer.write(data)
            writer.commit(expected_sha256)
        return len(data)

    def put_many(self, items: list[tuple[bytes, str]], *, durable: bool = True
                 ) -> list[int | Exception]:
        """`put_bytes` for each (data, expected sha256): per item its size, or the
        DigestMismatch or OSError that kept it out of the store."""
        results: list[int | Exception] = []
        for data, expected_sha256 in items:
            try:
                results.append(self.put_bytes(data, expected_sha256, durable=durable))
            except (DigestMismatch, OSError) as exc:
                results.append(exc)
        return results

    def flush(self) -> None:
        """Make every artifact stored so far durable (after put_bytes(durable=False))."""

    def hash_stored(self, sha256: str) -> str:
        """Re-hash stored bytes (for repair)."""
        digest = hashlib.sha256()
        with self.open(sha256) as stream:
            while block := stream.read(READ_BLOCK):
                digest.update(block)
        return digest.hexdigest()


class LocalStorage(ArtifactStorage):
    """Artifacts under `root/ab/<sha256>`, temporary files under `root/.tmp`; the file
    `root/.layout` names the layout.

    One level of 256 folders, as git and Pulp keep theirs: a second level (`ab/cd/`, layout
    1) made a new folder for almost every artifact of a young store, which cost more than
    writing the artifacts did. Even 10 million artifacts are only 40,000 per folder."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.temporaries = self.root / ".tmp"
        self.journals = self.temporaries / JOURNALS
        self.journals.mkdir(parents=True, exist_ok=True)
        remove_dead_temporaries(self.temporaries)
        self.tmp, self._lock_fd = own_folder(self.temporaries)
        self._root, self._tmp = str(self.root), str(self.tmp)
        self._settle_layout()

    def close(self) -> None:
        """Remove this store object's temporary folder (a killed process's goes at the next
        start)."""
        shutil.rmtree(self.tmp, ignore_errors=True)
        Path(f"{self.tmp}.lock").unlink(missing_ok=True)
        os.close(self._lock_fd)

    def staging(self) -> "Staging":
        return Staging(self)

    def place(self, path: Path, sha256: str) -> bool:
        """Move a verified file into place, not yet durable (see `flush`); False if the
        store held those bytes already (the file is then removed)."""
        target = self._location(sha256)
        if os.path.isfile(target):
            os.unlink(path)
            return False
        try:
            os.replace(path, target)
        except FileNotFoundError:  # the first file of its folder
            os.makedirs(os.path.dirname(target), exist_ok=True)
            os.replace(path, target)
        return True

    def journal(self, sha256s: list[str]) -> Path:
        """A durable list of artifacts about to be placed: if the process dies before it
        records them, `journals` gets it at the next start, and a later import records
        them (so orphan cleanup can judge them)."""
        path = self.tmp / f"journal-{secrets.token_hex(8)}"
        with open(path, "w") as file:
            file.write("".join(f"{sha}\n" for sha in sha256s))
            file.flush()
            os.fsync(file.fileno())
        return path

    def abandon(self, journal: Path) -> None:
        """Hand a journal over to the next recovery (its records could not be written)."""
        with contextlib.suppress(OSError):
            os.replace(journal, self.journals / journal.name)

    def _settle_layout(self) -> None:
        """Move the artifacts of a layout-1 store up one folder, once. The first process
        to open the store does it under a lock; the others wait, then find it done. Each
        move is one atomic rename, so an interrupted run is finished by the next one."""
        marker = self.root / ".layout"
        if _known_layout(marker) == LAYOUT:
            return
        with open(self.root / ".layout.lock", "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes
            if _known_layout(marker) == LAYOUT:
                return
            if moved := _flatten(self.root):
                log.info("moved %d artifacts of %s to layout %s", moved, self.root, LAYOUT)
                self.flush()  # the moves are durable before the marker says they are done
            temporary = self.tmp / f"layout-{os.getpid()}"
            with open(temporary, "w") as file:
                file.write(LAYOUT + "\n")
                file.flush()
                os.fsync(file.fileno())
            os.replace(temporary, marker)
            fsync_dir(self.root)

    def path(self, sha256: str) -> Path:
        return Path(self._location(sha256))

    def location(self, sha256: str) -> str:
        """`path` as text: the content app builds one for every path it serves, and a Path
        costs it a third of a request."""
        return self._location(sha256)

    def _location(self, sha256: str) -> str:
        if _SHA256.fullmatch(sha256) is None:
            raise Invalid(f"{sha256!r} is not a sha256 digest")
        return f"{self._root}/{sha256[:2]}/{sha256}"

    def writer(self) -> Writer:
        return _LocalWriter(self)

    def exists(self, sha256: str) -> bool:
        return os.path.isfile(self._location(sha256))  # asked per file by a sync: no Path

    def open(self, sha256: str) -> BinaryIO:
        return open(self._location(sha256), "rb")

    def read(self, sha256: str, limit: int) -> bytes:
        # An export reads thousands of small files: a plain descriptor costs a third of a
        # buffered file object.
        fd = os.open(self._location(sha256), os.O_RDONLY | os.O_CLOEXEC)
        try:
            data = os.read(fd, limit)
            while len(data) < limit and (more := os.read(fd, limit - len(data))):
                data += more
            return data
        finally:
            os.close(fd)

    def delete(self, sha256: str) -> None:
        self.path(sha256).unlink(missing_ok=True)

    def put_bytes(self, data: bytes, expected_sha256: str, *, durable: bool = True) -> int:
        # Many small files: one open/write/rename each, no temporary-name search, and (not
        # durable) no fsync of the file and its folder, which cost more than the download;
        # `flush()` then makes a whole batch durable with one syncfs. Plain os calls on
        # string paths: buffered files and Path objects cost more than the writing here.
        # The temporary file is made in .tmp and renamed into place.
        actual = hashlib.sha256(data).hexdigest()
        if actual != expected_sha256.lower():
            raise DigestMismatch(
                f"the bytes have sha256 {actual}, not the expected {expected_sha256}",
                details={"expected": expected_sha256, "actual": actual})
        folder = f"{self._root}/{actual[:2]}"
        target = f"{folder}/{actual}"
        if os.path.isfile(target):  # never replaced: stored bytes are durable, these not yet
            return len(data)
        temporary = f"{self._tmp}/small-{actual}-{os.getpid()}-{threading.get_ident()}"
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o666)
        try:
            try:
                written = 0
                while written < len(data):  # a short write is rare: data[0:] is no copy
                    written += os.write(fd, data[written:])
                if durable:
                    os.fsync(fd)
            finally:
                os.close(fd)
            try:
                os.replace(temporary, target)
            except FileNotFoundError:  # the first file of its folder
                os.makedirs(folder, exist_ok=True)
                os.replace(temporary, target)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(temporary)
            raise
        if durable:
            fsync_dir(Path(folder))
        return len(data)

    def flush(self) -> None:
        fd = os.open(self.root, os.O_RDONLY)
        try:
            if _LIBC is not None and _LIBC.syncfs(fd) == 0:
                return
            os.sync()  # no syncfs here: flush every file system
        finally:
            os.close(fd)

    def ingest(self, path: Path, expected_sha256: str,
               progress: Callable[[int], None] = lambda done: None) -> tuple[str, int]:
        digest, size = hashlib.sha256(), 0
        with open(path, "rb") as source:
            while block := source.read(READ_BLOCK):
                digest.update(block)
                size += len(block)
                progress(size)
            os.fsync(source.fileno())
        actual = digest.hexdigest()
        if actual != expected_sha256.lower():
            raise DigestMismatch(
                f"the bytes have sha256 {actual}, not the expected {expected_sha256}",
                details={"expected": expected_sha256, "actual": actual})
        if self.exists(actual):
            path.unlink(missing_ok=True)
        else:
            try:
                self.adopt(path, actual)
            except OSError:  # another file system: copy, verifying again on the way
                return super().ingest(path, expected_sha256, progress)
        return actual, size

    def adopt(self, path: Path, sha256: str) -> None:
        """Move an already verified file (on the same file system) into place."""
        target = self.path(sha256)
        target.parent.mkdir(parents=True, exist_ok=True)
        os.replace(path, target)
        fsync_dir(target.parent)


class _LocalWriter(Writer):
    """`place(path, sha256)` moves the verified file where it belongs (into the store)."""

    def __init__(self, storage: LocalStorage,
                 place: Callable[[Path, str], None] | None = None) -> None:
        self.storage = storage
        self._place = place or storage.adopt
        fd, name = tempfile.mkstemp(dir=storage.tmp, prefix="incoming-")
        self._file = os.fdopen(fd, "wb")
        self._path = Path(name)
        self.sha256 = hashlib.sha256()
        self.size = 0
        self._done = False

    def write(self, data: bytes) -> None:
        self.sha256.update(data)
        self._file.write(data)
        self.size += len(data)

    def commit(self, expected_sha256: str | None = None) -> str:
        digest = self.sha256.hexdigest()
        if expected_sha256 is not None and digest != expected_sha256.lower():
            self.abort()
            raise DigestMismatch(
                f"the bytes have sha256 {digest}, not the expected {expected_sha256}",
                details={"expected": expected_sha256, "actual": digest})
        self._file.flush()
        os.fsync(self._file.fileno())
        self._file.close()
        if self.storage.exists(digest):
            self._path.unlink(missing_ok=True)
        else:
            self._place(self._path, digest)
        self._done = True
        return digest

    def abort(self) -> None:
        if not self._done:
            self._file.close()
            self._path.unlink(missing_ok=True)
            self._done = True


class Staging:
    """Verified bytes held apart from the store, in numbered groups, until something else
    vouches for them too (an import: the checksum of the chunk they came in). `staged(group)`
    lists a group's files for the caller to `place`; `discard()` drops whatever is left.
    It lives in the owner's temporary folder, so a killed process's staging goes too."""

    def __init__(self, storage: LocalStorage) -> None:
        self.storage = storage
        self.dir = Path(tempfile.mkdtemp(dir=storage.tmp, prefix="staged-"))
        self._groups: set[int] = set()

    def _path(self, group: int, sha256: str) -> str:
        if group not in self._groups:
            os.mkdir(self.dir / str(group))
            self._groups.add(group)
        return f"{self.dir}/{group}/{sha256}"

    def put_bytes(self, data: bytes, expected_sha256: str, group: int) -> int:
        actual = hashlib.sha256(data).hexdigest()
        if actual != expected_sha256.lower():
            raise DigestMismatch(
                f"the bytes have sha256 {actual}, not the expected {expected_sha256}",
                details={"expected": expected_sha256, "actual": actual})
        fd = os.open(self._path(group, actual), os.O_WRONLY | os.O_CREAT | os.O_TRUNC
                     | os.O_CLOEXEC, 0o666)
        try:
            written = 0
            while written < len(data):
                written += os.write(fd, data[written:])
        finally:
            os.close(fd)
        return len(data)

    def writer(self, group: Callable[[], int]) -> Writer:
        """A writer whose verified file joins group `group()`, asked when it is committed
        (an import's: the chunk its last byte came from)."""
        return _LocalWriter(self.storage,
                            place=lambda path, sha256: os.replace(path,
                                                                  self._path(group(), sha256)))

    def groups(self) -> list[int]:
        return sorted(self._groups)

    def staged(self, group: int, batch: int) -> Iterator[list[tuple[str, int, Path]]]:
        """(sha256, size, path) of a group's files, up to `batch` at a time, for the caller
        to move away before the next batch (each read from a fresh listing, as a folder
        changed while it is listed may skip entries); the group is forgotten."""
        if group not in self._groups:
            return
        self._groups.discard(group)
        folder = self.dir / str(group)
        given: set[str] = set()
        while True:
            with os.scandir(folder) as entries:
                files = [(entry.name, entry.stat().st_size, Path(entry.path))
                         for entry, _ in zip(entries, range(batch))]
            if not files:
                break
            # A file given before and still here: the caller did not move it away, and the
            # listing would give it again forever.
            if given.intersection(name for name, _, _ in files):
                raise RuntimeError("staged files must be moved away before the next batch")
            given = {name for name, _, _ in files}
            yield files
        os.rmdir(folder)

    def discard(self) -> None:
        shutil.rmtree(self.dir, ignore_errors=True)
        self._groups.clear()


def _known_layout(marker: Path) -> str | None:
    """The layout a store's marker names: None for layout 1 (it had no marker); a layout
    this Pallet does not know (a newer release's) stops it before it touches anything."""
    try:
        layout = marker.read_text().strip()
    except FileNotFoundError:
        return None
    if layout != LAYOUT:
        raise PalletError(f"the artifact store {marker.parent} has layout {layout[:20]!r}; "
                          f"this Pallet knows layout {LAYOUT}: run the release that made it",
                          code="store_layout", details={"layout": layout[:20]})
    return layout


def _flatten(root: Path) -> int:
    """Move every artifact at root/ab/cd/<sha256> to root/ab/<sha256>; the count moved.
    Emptied folders are removed; anything that is not an artifact stays where it is."""
    moved = 0
    for top in os.scandir(root):
        if not (_PREFIX.fullmatch(top.name) and top.is_dir(follow_symlinks=False)):
            continue
        for middle in os.scandir(top.path):
            if not (_PREFIX.fullmatch(middle.name) and middle.is_dir(follow_symlinks=False)):
                continue
            for entry in os.scandir(middle.path):
                if (_SHA256.fullmatch(entry.name) and entry.is_file(follow_symlinks=False)
                        and entry.name.startswith(top.name + middle.name)):
                    os.replace(entry.path, f"{top.path}/{entry.name}")
                    moved += 1
            with contextlib.suppress(OSError):  # not empty: a stranger stays
                os.rmdir(middle.path)
    return moved


def _load_libc():
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        return libc if hasattr(libc, "syncfs") else None
    except OSError:
        return None


_LIBC = _load_libc()


_SYNC_FILE_RANGE_WRITE = 2
_sync_file_range = getattr(_LIBC, "sync_file_range", None)
if _sync_file_range is not None:
    _sync_file_range.argtypes = (ctypes.c_int, ctypes.c_int64, ctypes.c_int64, ctypes.c_uint)


def start_writeback(fd: int, offset: int, length: int) -> None:
    """Ask the kernel to start writing a file's range to disk now, without waiting: a large
    file written this way is mostly on disk by the time it is fsynced, so its fsync is short
    and the disk works while the writer does. A no-op where Linux's sync_file_range is not."""
    if _sync_file_range is not None:
        _sync_file_range(fd, offset, length, _SYNC_FILE_RANGE_WRITE)


def fsync_dir(path: Path) -> None:
    """Make a folder's entries (a file just created or renamed there) durable."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)

