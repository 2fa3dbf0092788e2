"""Two worker processes on PostgreSQL take tasks from one queue: tasks that conflict never
overlap and start in the order they were queued; tasks that do not conflict run side by side."""

import pytest

from pallet.repositories import service, versions
from pallet.tasks.models import Task
from pallet.tasks.service import enqueue
from tests.processes import bulk_file_units, start_worker, stop, wait_until

TASKS_PER_REPOSITORY = 6
UNITS_PER_TASK = 20_000


@pytest.mark.slow
def test_conflicting_tasks_from_two_processes_never_overlap(runtime, tmp_path):
    if runtime.db.is_sqlite:
        pytest.skip("scale-out workers coordinate through PostgreSQL")
    names = ("left", "right")
    with runtime.db.write() as session:
        repositories = [service.create_repository(session, runtime.plugins, name=n, type="file")
                        for n in names]
    batches = {r.name: [bulk_file_units(runtime, UNITS_PER_TASK, f"{r.name}-{i}")
                        for i in range(TASKS_PER_REPOSITORY)] for r in repositories}
    with runtime.db.write() as session:
        for i in range(TASKS_PER_REPOSITORY):  # interleaved: left, right, left, right…
            for repository in repositories:
                enqueue(session, "repository.modify", exclusive=[service.lock_name(repository)],
                        repository_id=repository.id, add_content=batches[repository.name][i])

    workers = [start_worker(runtime.settings, tmp_path / f"worker-{i}.log") for i in range(2)]
    try:
        def finished():
            with runtime.db.read() as session:
                tasks = session.query(Task).order_by(Task.id).all()
            return all(t.finished_at for t in tasks) and tasks
        tasks = wait_until(finished, 180, "the tasks did not finish")
    finally:
        for worker in workers:
            stop(worker)

    assert all(t.state == "completed" for t in tasks), [t.error for t in tasks]
    assert len({t.worker.split("/")[0] for t in tasks}) == 2, "both processes took work"
    left, right = ([t for t in tasks if t.args["repository_id"] == r.id] for r in repositories)
    assert any(a.started_at < b.finished_at and b.started_at < a.finished_at
               for a in left for b in right), "tasks on different repositories ran side by side"
    for repository in repositories:
        mine = [t for t in tasks if t.args["repository_id"] == repository.id]
        for earlier, later in zip(mine, mine[1:]):
            assert earlier.finished_at <= later.started_at, "conflicting tasks overlapped"
        with runtime.db.read() as session:
            latest = versions.latest_version(session, repository)
            assert latest.number == TASKS_PER_REPOSITORY
            assert latest.counts["file"]["present"] == TASKS_PER_REPOSITORY * UNITS_PER_TASK
            assert latest.digest == versions.recompute_digest(session, repository, latest.number)
