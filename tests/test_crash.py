"""A worker process killed with SIGKILL in the middle of a large modify: no half version,
the task is failed within a bounded time, and running it again succeeds."""

import signal
from pathlib import Path

import pytest
from sqlalchemy import func, select

from pallet.repositories import service, versions
from pallet.repositories.models import RepositoryContent
from pallet.tasks.service import enqueue, get_task
from tests.processes import bulk_file_units, start_worker, stop, wait_until

UNITS = 200_000


def task_state(runtime, task_id):
    with runtime.db.read() as session:
        return get_task(session, task_id)


def queue_modify(runtime, repository, ids) -> int:
    with runtime.db.write() as session:
        return enqueue(session, "repository.modify", exclusive=[service.lock_name(repository)],
                       repository_id=repository.id, add_content=ids).id


@pytest.mark.slow
def test_sigkill_mid_modify_leaves_no_half_version(runtime, tmp_path):
    with runtime.db.write() as session:
        repository = service.create_repository(session, runtime.plugins, name="big", type="file")
    ids = bulk_file_units(runtime, UNITS, "big")
    task_id = queue_modify(runtime, repository, ids)
    if runtime.db.is_sqlite:
        with runtime.db.engine.connect() as connection:
            connection.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")

    first = start_worker(runtime.settings, tmp_path / "worker-1.log")
    try:
        wait_until(lambda: task_state(runtime, task_id).state == "running", 30,
                   "the worker never started the task")
        if runtime.db.is_sqlite:
            # The open write transaction keeps progress from being written; uncommitted rows
            # show instead as the write-ahead log growing (it was truncated before the start).
            wal = Path(runtime.db.engine.url.database + "-wal")
            wait_until(lambda: wal.stat().st_size > 2**20, 30, "the task never wrote rows")
        else:  # wait until rows of the new version are being written, uncommitted
            wait_until(lambda: any(p["stage"] == "writing version" and p["done"]
                                   for p in task_state(runtime, task_id).progress), 30,
                       "the task never reported writing")
        assert first.poll() is None
        first.send_signal(signal.SIGKILL)
        first.wait(10)
    finally:
        stop(first)
    # It died in the middle: the task was still running, and nothing of it is visible.
    assert task_state(runtime, task_id).state == "running"
    with runtime.db.read() as session:
        assert versions.latest_version(session, repository).number == 0
        assert session.scalar(select(func.count()).select_from(RepositoryContent)) == 0

    second = start_worker(runtime.settings, tmp_path / "worker-2.log")
    try:
        failed = wait_until(lambda: task_state(runtime, task_id).state == "failed" and
                            task_state(runtime, task_id), 30,
                            "the dead worker's task was never failed")
        assert failed.error["code"] == "worker_lost"
        rerun = queue_modify(runtime, repository, ids)
        done = wait_until(lambda: task_state(runtime, rerun).finished_at and
                          task_state(runtime, rerun), 120, "the rerun did not finish")
        assert done.state == "completed", done.error
        print("the whole modify takes", done.finished_at - done.started_at)
    finally:
        stop(second)
    with runtime.db.read() as session:
        version = versions.latest_version(session, repository)
        assert version.number == 1 and version.counts["file"]["present"] == UNITS
        assert version.digest == versions.recompute_digest(session, repository, 1)
