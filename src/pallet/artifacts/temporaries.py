"""Temporary folders of an artifact store, one per store object, and their cleanup.

A store object writes its temporary files (downloads on their way in, an import's staging,
journals) in `.tmp/<host>-<pid>-<random>/`, and holds an flock on `.tmp/<name>.lock` for
its life. Whoever opens the store next removes every folder whose lock is free: its owner
is dead (killed mid-write), and nothing it left there is wanted. Journals are kept apart,
in `.tmp/journals/`, for the import to recover from (`transfer.staged.recover`).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
import secrets
import shutil
import socket
import time
from pathlib import Path

JOURNALS = "journals"  # .tmp/journals: what dead processes placed without recording it
LOOSE_SECONDS = 3600  # loose files in .tmp (releases before owner folders) are old by then


def hold_lock(path: Path) -> int:
    """A descriptor holding an flock on the lock file `path`, made for it. Checked after
    locking: a cleaner may have found it free and removed it in between (then again)."""
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        fcntl.flock(fd, fcntl.LOCK_EX)
        try:
            if os.stat(path).st_ino == os.fstat(fd).st_ino:
                return fd
        except FileNotFoundError:
            pass
        os.close(fd)


def take_abandoned(path: Path) -> int | None:
    """A descriptor holding the lock file `path` if nobody held it (its owner is dead);
    None if it is held, or gone."""
    try:
        fd = os.open(path, os.O_RDWR | os.O_CLOEXEC)
    except FileNotFoundError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:  # alive
        os.close(fd)
        return None
    return fd


def own_folder(temporaries: Path) -> tuple[Path, int]:
    """A temporary folder of this store object's own, and the descriptor holding its lock
    (made first, so a folder without a lock is a dead one's)."""
    host = re.sub(r"[^A-Za-z0-9.-]", "_", socket.gethostname())[:60]
    name = temporaries / f"{host}-{os.getpid()}-{secrets.token_hex(4)}"
    fd = hold_lock(Path(f"{name}.lock"))
    name.mkdir()
    return name, fd


def remove_dead_temporaries(temporaries: Path) -> None:
    """Remove the temporary folders of dead owners (their lock is free), keeping their
    journals for recovery; and loose files older than LOOSE_SECONDS (earlier releases)."""
    with os.scandir(temporaries) as entries:
        names = {entry.name: entry for entry in entries}
    for name, entry in names.items():
        if name == JOURNALS:
            continue
        if name.endswith(".lock"):
            _remove_if_dead(temporaries, name[:-len(".lock")])
        elif entry.is_dir(follow_symlinks=False):
            if f"{name}.lock" not in names:  # its lock was removed: its owner is gone
                _remove_folder(temporaries, name)
        elif time.time() - entry.stat(follow_symlinks=False).st_mtime > LOOSE_SECONDS:
            with contextlib.suppress(OSError):
                os.unlink(entry.path)


def _remove_if_dead(temporaries: Path, name: str) -> None:
    lock = temporaries / f"{name}.lock"
    if (fd := take_abandoned(lock)) is None:
        return
    try:
        _remove_folder(temporaries, name)
        lock.unlink(missing_ok=True)
    finally:
        os.close(fd)


def _remove_folder(temporaries: Path, name: str) -> None:
    folder = temporaries / name
    with contextlib.suppress(FileNotFoundError):
        for journal in folder.glob("journal-*"):
            os.replace(journal, temporaries / JOURNALS / journal.name)
    shutil.rmtree(folder, ignore_errors=True)
