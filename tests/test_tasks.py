"""The task queue with in-process workers: locks, order, cancel, errors, dead workers."""

import threading
import time
from datetime import timedelta

import pytest
from sqlalchemy import select

from pallet.db.base import utcnow
from pallet.errors import Conflict
from pallet.tasks import service
from pallet.tasks.models import RUNNING, Task, TaskLock, Worker
from pallet.tasks.registry import task_function
from pallet.tasks.worker import reap_dead_workers
from tests.conftest import wait_for_task

RECORD: list[tuple[int, str, float]] = []
BARRIER = threading.Barrier(2, timeout=10)


@task_function("test.record")
def record(runtime, task, *, seconds: float = 0.05) -> None:
    RECORD.append((task.id, "start", time.monotonic()))
    time.sleep(seconds)
    RECORD.append((task.id, "end", time.monotonic()))


@task_function("test.meet")
def meet(runtime, task) -> None:
    BARRIER.wait()  # only passes if two of these run at the same time


@task_function("test.spin")
def spin(runtime, task, *, seconds: float = 20) -> None:
    deadline = time.monotonic() + seconds
    done = 0
    while time.monotonic() < deadline:
        done += 1
        task.progress("spinning", done, None)
        time.sleep(0.02)


@task_function("test.crash")
def crash(runtime, task) -> None:
    raise RuntimeError("secret internal detail")


def enqueue(runtime, name, exclusive=(), shared=(), **kwargs) -> int:
    with runtime.db.write() as session:
        task_id = service.enqueue(session, name, exclusive=exclusive, shared=shared, **kwargs).id
    runtime.wakeup.set()
    return task_id


def wait(client, task_id, timeout=30):
    return wait_for_task(client, f"/api/v1/tasks/{task_id}", timeout)


def wait_state(client, task_id, state, timeout=10):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if client.get(f"/api/v1/tasks/{task_id}").json()["state"] == state:
            return
        time.sleep(0.02)
    raise AssertionError(f"task {task_id} never became {state}")


def test_exclusive_tasks_never_overlap_and_start_in_queue_order(runtime, client, workers):
    RECORD.clear()
    ids = [enqueue(runtime, "test.record", exclusive=["res:a"]) for _ in range(6)]
    for task_id in ids:
        assert wait(client, task_id)["state"] == "completed"
    starts = [task_id for task_id, event, _ in RECORD if event == "start"]
    assert starts == ids
    events = sorted(RECORD, key=lambda e: e[2])
    running = 0
    for _, event, _ in events:
        running += 1 if event == "start" else -1
        assert running <= 1


def test_shared_locks_let_tasks_run_together(runtime, client, workers):
    BARRIER.reset()
    ids = [enqueue(runtime, "test.meet", shared=["res:b"]) for _ in range(2)]
    assert [wait(client, i)["state"] for i in ids] == ["completed", "completed"]


def test_cancel_waiting_and_running_tasks(runtime, client, workers):
    running = enqueue(runtime, "test.spin", exclusive=["res:c"])
    waiting = enqueue(runtime, "test.record", exclusive=["res:c"])
    wait_state(client, running, "running")
    assert client.get(f"/api/v1/tasks/{waiting}").json()["state"] == "waiting"
    assert client.post(f"/api/v1/tasks/{waiting}/cancel").json()["state"] == "canceled"
    time.sleep(0.6)  # progress reaches the database
    shown = client.get(f"/api/v1/tasks/{running}").json()
    assert shown["progress"][0]["stage"] == "spinning" and shown["progress"][0]["done"] > 0
    assert client.post(f"/api/v1/tasks/{running}/cancel").json()["cancel_requested"]
    assert wait(client, running, timeout=10)["state"] == "canceled"
    response = client.post(f"/api/v1/tasks/{running}/cancel")
    assert response.status_code == 409 and response.json()["error"]["code"] == "conflict"


def test_unexpected_errors_are_failed_without_a_traceback(runtime, client, workers, caplog):
    task = wait(client, enqueue(runtime, "test.crash"))
    assert task["state"] == "failed" and task["error"]["code"] == "internal"
    assert "secret internal detail" not in str(task["error"])
    assert "secret internal detail" in caplog.text  # the log has it


def test_a_dead_workers_task_fails_and_frees_its_locks(runtime, client, workers):
    long_ago = utcnow() - timedelta(hours=1)
    with runtime.db.write() as session:
        session.add(Worker(name="ghost", started_at=long_ago, heartbeat_at=long_ago))
        orphan = Task(name="test.record", state=RUNNING, worker="ghost", args={},
                      progress=[], created_resources=[], started_at=long_ago)
        orphan.locks = [TaskLock(resource="res:d", exclusive=True)]
        session.add(orphan)
        session.flush()
        orphan_id = orphan.id
    follower = enqueue(runtime, "test.record", exclusive=["res:d"])
    assert wait(client, follower, timeout=10)["state"] == "completed"
    failed = client.get(f"/api/v1/tasks/{orphan_id}").json()
    assert failed["state"] == "failed" and failed["error"]["code"] == "worker_lost"
    assert "ghost" not in [w["name"] for w in client.get("/api/v1/workers").json()]
    assert reap_dead_workers(runtime) == []


def test_purge_groups_and_filters(runtime, client, workers):
    with runtime.db.write() as session:
        group = service.create_group(session, "two of them").id
    ids = [enqueue(runtime, "test.record", group_id=group) for _ in range(2)]
    for task_id in ids:
        wait(client, task_id)
    shown = client.get(f"/api/v1/task-groups/{group}").json()
    assert shown["states"] == {"completed": 2} and len(shown["tasks"]) == 2
    assert client.get("/api/v1/tasks", params={"group": group}).json()["count"] == 2
    assert client.get("/api/v1/tasks", params={"state": "bogus"}).status_code == 400
    spinning = enqueue(runtime, "test.spin", seconds=5)
    wait_state(client, spinning, "running")
    assert client.post("/api/v1/tasks/purge", json={"older_than_days": 0}).json()["purged"] == 2
    assert client.get(f"/api/v1/tasks/{ids[0]}").status_code == 404
    assert client.get(f"/api/v1/tasks/{spinning}").json()["state"] == "running"
    client.post(f"/api/v1/tasks/{spinning}/cancel")
    wait(client, spinning)


def test_a_scheduled_run_waits_one_period_and_never_runs_beside_a_manual_one(runtime):
    from pallet.tasks import schedules
    from pallet.tasks.models import TaskSchedule

    with runtime.db.write() as session:
        made = schedules.set_schedule(session, "test:2", "test.record", 600,
                                      exclusive=["thing:2"])
        assert made.next_run_at > utcnow() + timedelta(seconds=590)
    assert schedules.queue_due(runtime.db) == []
    manual = enqueue(runtime, "test.record", exclusive=["thing:2"])  # queued by hand
    with runtime.db.write() as session:
        session.scalar(select(TaskSchedule)).next_run_at = utcnow() - timedelta(seconds=1)
    assert schedules.queue_due(runtime.db) == []  # skipped: the manual run is unfinished
    with runtime.db.write() as session:
        session.get(Task, manual).state = "completed"
        session.scalar(select(TaskSchedule)).next_run_at = utcnow() - timedelta(seconds=1)
    assert len(schedules.queue_due(runtime.db)) == 1
    with runtime.db.write() as session:  # a new period starts counting again
        changed = schedules.set_schedule(session, "test:2", "test.record", 300,
                                         exclusive=["thing:2"])
        assert changed.next_run_at > utcnow() + timedelta(seconds=290)


def test_cancel_a_finished_group_task_is_a_conflict(runtime):
    with runtime.db.write() as session:
        task = service.enqueue(session, "test.record")
        task.state = "completed"
    with runtime.db.write() as session, pytest.raises(Conflict):
        service.cancel_task(session, task.id)


def test_a_task_of_an_unregistered_worker_is_failed(runtime, client, workers):
    with runtime.db.write() as session:
        lost = Task(name="test.record", state=RUNNING, worker="vanished", args={},
                    progress=[], created_resources=[], started_at=utcnow())
        session.add(lost)
        session.flush()
        lost_id = lost.id
    deadline = time.monotonic() + 10
    while client.get(f"/api/v1/tasks/{lost_id}").json()["state"] == "running":
        assert time.monotonic() < deadline, "the lost task was never failed"
        time.sleep(0.1)
    assert client.get(f"/api/v1/tasks/{lost_id}").json()["error"]["code"] == "worker_lost"


def test_a_schedule_queues_its_task_once_per_interval_and_never_piles_up(runtime):
    from pallet.tasks import schedules
    from pallet.tasks.models import TaskSchedule

    with runtime.db.write() as session:
        schedules.set_schedule(session, "test:1", "test.record", 60, exclusive=["thing:1"],
                               seconds=0)
    assert schedules.queue_due(runtime.db) == []  # the first run is one period later
    with runtime.db.write() as session:
        session.scalar(select(TaskSchedule)).next_run_at = utcnow() - timedelta(seconds=1)
    first = schedules.queue_due(runtime.db)
    assert len(first) == 1
    assert schedules.queue_due(runtime.db) == []  # not due again for a minute
    with runtime.db.write() as session:  # a minute later, the first run still waiting
        schedule = session.scalar(select(TaskSchedule))
        schedule.next_run_at = utcnow() - timedelta(seconds=1)
    assert schedules.queue_due(runtime.db) == []
    with runtime.db.write() as session:
        session.get(Task, first[0]).state = "completed"
        session.scalar(select(TaskSchedule)).next_run_at = utcnow() - timedelta(seconds=1)
    again = schedules.queue_due(runtime.db)
    assert len(again) == 1 and again != first
    with runtime.db.read() as session:
        task = session.get(Task, again[0])
        assert (task.name, task.args, task.created_by) == ("test.record", {"seconds": 0},
                                                           "schedule test:1")
        assert [(lock.resource, lock.exclusive) for lock in task.locks] == [("thing:1", True)]
    with runtime.db.write() as session:
        schedules.set_schedule(session, "test:1", "test.record", None)
        session.flush()
        assert session.scalar(select(TaskSchedule)) is None
