"""The record stage of a sync: one batch's rows, written in one short transaction once its
files are in: artifacts for the bytes stored, new content with its content artifacts, links
for existing units that lacked the bytes (those the plan found held, and those found here),
and where each file can be fetched from this remote (remote artifacts). Runs in a worker
thread; batches are written one at a time.

Units are decoded from their JSON text RECORD_CHUNK at a time, so the dicts of a whole batch
are never alive together.
"""

from __future__ import annotations

import itertools
from array import array

from sqlalchemy import bindparam, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from pallet.content.bulk import link_artifacts, record_artifacts, record_units
from pallet.content.models import ContentArtifact
from pallet.db.bulk import among, id_batches, insert_values
from pallet.plugin import RemoteFile
from pallet.remotes.models import RemoteArtifact
from pallet.remotes.plan import SyncUnit
from pallet.runtime import Runtime

WRITE_ATTEMPTS = 3  # a batch write retried after losing a race with another sync
RECORD_CHUNK = 500
CA, RA = ContentArtifact, RemoteArtifact


def record_batch(runtime: Runtime, remote_id: int, units: list[SyncUnit],
                 artifacts: dict[str, tuple[int, int]], stored: dict[str, int]) -> array:
    """Write the rows of `units` (`artifacts` recorded already, `stored` bytes in the store
    without a row, sha256 -> size); returns their content ids."""
    if not artifacts and not stored and all(unit.recorded for unit in units):
        return array("q", (unit.content_id for unit in units))  # held as they are: no write
    runtime.storage.flush()  # the batch's small files are durable before recorded
    for attempt in range(WRITE_ATTEMPTS):
        try:
            with runtime.db.write() as session:
                known = dict(artifacts)
                known.update(record_artifacts(session, {sha: size for sha, size in
                                                        stored.items() if sha not in known}))
                # Units the server holds (plan.held_units): only the bytes they lacked.
                ids = {unit.digest: unit.content_id for unit in units
                       if unit.content_id is not None}
                link_artifacts(session, list(ids.values()), known)
                for chunk in _chunks([unit for unit in units if unit.content_id is None]):
                    ids.update(record_units(session, runtime.plugins,
                                            (unit.new_unit() for unit in chunk), known))
                _record_remote_files(session, remote_id,
                                     [unit for unit in units if not unit.recorded], ids)
            break
        except IntegrityError:  # another sync added the same rows: look again
            if attempt == WRITE_ATTEMPTS - 1:
                raise
    return array("q", ids.values())


def _chunks(units: list[SyncUnit]):
    iterator = iter(units)
    while chunk := list(itertools.islice(iterator, RECORD_CHUNK)):
        yield chunk


def _record_remote_files(session: Session, remote_id: int, units: list[SyncUnit],
                         ids: dict[str, int]) -> None:
    """Where each file can be fetched from this remote: one row per (file, remote),
    updated when the URL or size moved."""
    wanted: dict[tuple[int, str], RemoteFile] = {
        (ids[unit.digest], path): file for unit in units for path, file in unit.files}
    by_key: dict[int, RemoteFile] = {}
    for chunk in id_batches(session, sorted({content_id for content_id, _ in wanted})):
        for ca_id, content_id, path in session.execute(
                select(CA.id, CA.content_id, CA.relative_path)
                .where(among(session, CA.content_id, chunk))):
            if (content_id, path) in wanted:
                by_key[ca_id] = wanted[(content_id, path)]
    known: dict[int, tuple[int, str, int | None]] = {}
    for chunk in id_batches(session, sorted(by_key)):
        known.update((ca_id, (ra_id, url, size)) for ra_id, ca_id, url, size in
                     session.execute(select(RA.id, RA.content_artifact_id, RA.url, RA.size)
                                     .where(RA.remote_id == remote_id,
                                            among(session, RA.content_artifact_id, chunk))))
    rows, moved = [], []
    for ca_id, file in by_key.items():
        if ca_id not in known:
            rows.append((ca_id, remote_id, file.url, file.sha256, file.size))
        elif known[ca_id][1:] != (file.url, file.size):
            moved.append({"ra_id": known[ca_id][0], "url": file.url, "size": file.size})
    insert_values(session, RA.__table__,
                  ("content_artifact_id", "remote_id", "url", "sha256", "size"), rows)
    if moved:  # a new place: give it a fresh chance if the old one had failed
        table = RA.__table__
        session.execute(table.update().where(table.c.id == bindparam("ra_id"))
                        .values(url=bindparam("url"), size=bindparam("size"),
                                failed_at=None), moved)
