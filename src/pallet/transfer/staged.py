"""What an import stores, held back until the archive vouches for it.

An artifact's bytes are verified against its sha256 as they are read, but that only says
they are *some* file's bytes: an attacker who alters a chunk of a signed export can name
their own bytes by their own digest. So the bytes wait in a staging folder, grouped by the
chunk their last byte came from, and enter the store (placed and recorded, a batch at a
time) only once that chunk's checksum, which the signed table of contents lists, has been
checked (a stream's bytes are vouched for as they come: see `chunks.Source`). Units wait in
a spool file until the whole archive has been checked, as every one of their files must be
recorded before they are.

A failed import records what was vouched for (a rerun reuses it, orphan cleanup can judge
it) and removes whatever else it staged with the staging folder; a killed one's goes at
the next start (`LocalStorage` removes dead owners' temporary folders). Placing a batch
into the store and recording it is the one step a kill could split: a journal lists the
batch first, and `recover` records what a dead import placed (orphan cleanup can then
judge it), or removes it if its bytes are not what their name says.
"""

from __future__ import annotations

import json
import logging
from typing import Callable, Iterator

from pallet.artifacts.storage import LocalStorage
from pallet.content.bulk import NewUnit, insert_artifacts, record_artifacts
from pallet.db import Database

STORE_BATCH = 2000  # artifacts placed and recorded per short write transaction
log = logging.getLogger(__name__)


class StagedImport:
    """The staging of one import: artifacts by chunk, then units, then the store."""

    def __init__(self, db: Database, storage: LocalStorage) -> None:
        self.db, self.storage = db, storage
        self.staging = storage.staging()
        self._spool = open(self.staging.dir / "units.jsonl", "w+", encoding="utf-8")
        self._counts: dict[int, int] = {}  # files staged per group

    def put_bytes(self, data: bytes, sha256: str, group: int) -> None:
        self.staging.put_bytes(data, sha256, group)
        self._counts[group] = self._counts.get(group, 0) + 1

    def writer(self, group: Callable[[], int]):
        def chosen() -> int:
            number = group()
            self._counts[number] = self._counts.get(number, 0) + 1
            return number
        return self.staging.writer(chosen)

    def promote(self, below: int | None = None, filling: int | None = None) -> None:
        """Place and record the artifacts of every group (chunk) below `below`, or all; the
        group still `filling` only once it holds a batch."""
        for group in self.staging.groups():
            if below is not None and group >= below:
                break
            if group == filling and self._counts.get(group, 0) < STORE_BATCH:
                continue
            self._counts.pop(group, None)
            for files in self.staging.staged(group, STORE_BATCH):
                self._place(group, {sha256: size for sha256, size, _ in files})

    def _place(self, group: int, batch: dict[str, int]) -> None:
        if not batch:
            return
        journal = self.storage.journal(list(batch))
        folder = f"{self.staging.dir}/{group}"  # text, not a Path per file (a fifth of this)
        try:
            for sha256 in batch:
                self.storage.place(f"{folder}/{sha256}", sha256)
            self.storage.flush()  # durable before recorded
            with self.db.write() as session:
                insert_artifacts(session, batch)  # the ids are looked up with the units
        except BaseException:
            self.storage.abandon(journal)  # the next import records what was placed
            raise
        journal.unlink()

    def spool(self, index: int, units: list[NewUnit]) -> None:
        for unit in units:
            self._spool.write(json.dumps([index, unit.type, unit.digest, unit.data,
                                          unit.files], separators=(",", ":")) + "\n")

    def spooled(self, batch: int) -> Iterator[tuple[int, list[NewUnit]]]:
        """The spooled units again, as (repository index, up to `batch` units)."""
        self._spool.flush()
        self._spool.seek(0)
        index, units = None, []
        for line in self._spool:
            number, type_, digest, data, files = json.loads(line)
            if units and (number != index or len(units) >= batch):
                yield index, units
                units = []
            index = number
            units.append(NewUnit(type_, digest, data, tuple(tuple(f) for f in files)))
        if units:
            yield index, units

    def discard(self) -> None:
        self._spool.close()
        self.staging.discard()


def recover(db: Database, storage: LocalStorage) -> int:
    """Record what dead imports placed in the store without recording it (their journals);
    remove any such file whose bytes do not have its digest. The count recorded."""
    recorded = 0
    for journal in sorted(storage.journals.iterdir()):
        found: dict[str, int] = {}
        for sha256 in journal.read_text().split():
            if not storage.exists(sha256):
                continue  # never placed
            if storage.hash_stored(sha256) != sha256:  # cut short by a crash
                storage.delete(sha256)
                continue
            found[sha256] = storage.path(sha256).stat().st_size
        with db.write() as session:
            record_artifacts(session, found)
        journal.unlink(missing_ok=True)
        recorded += len(found)
    if recorded:
        log.info("recorded %d artifacts that interrupted imports had stored", recorded)
    return recorded
