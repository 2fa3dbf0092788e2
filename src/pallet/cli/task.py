"""`pallet task ...`, and waiting on tasks: a progress bar on stderr, then the outcome.

Commands that start a task wait for it by default and end as it ends: completed shows what
it created, failed or canceled exit 1. `--no-wait` prints the task and returns at once.
Ctrl-C while waiting stops the waiting only; the task continues on the server.
"""

from __future__ import annotations

import time
from typing import Annotated, Any, Callable

import typer
from rich.progress import (BarColumn, MofNCompleteColumn, Progress, ProgressColumn, Task,
                           TaskID, TimeElapsedColumn)
from rich.text import Text

from pallet.cli.client import Client, Limit, Offset, connect, path
from pallet.cli.output import (JsonFlag, emit_json, errors, fail, note, printable, record,
                               say, show_page, table)

FINISHED = ("completed", "failed", "canceled")
NoWait = Annotated[bool, typer.Option("--no-wait", help="Print the task and return at once "
                                                        "instead of waiting for it.")]
Describe = Callable[[dict[str, Any]], None]

app = typer.Typer(help="Background tasks: list, show, wait for, cancel and purge them.",
                  no_args_is_help=True)
group_app = typer.Typer(help="Task groups: tasks started together, such as a repair of "
                             "every version.", no_args_is_help=True)
app.add_typer(group_app, name="group")


class _Description(ProgressColumn):
    """A bar's description as plain text: it holds the server's stage names, which must
    neither be read as markup nor reach the terminal with their control characters."""

    def render(self, task: Task) -> Text:
        return Text(printable(task.description))


def progress_bar(*columns: ProgressColumn) -> Progress:
    """Bars on stderr, only when it is a terminal; gone once done."""
    columns = columns or (MofNCompleteColumn(), TimeElapsedColumn())
    return Progress(_Description(), BarColumn(), *columns, console=errors,
                    transient=True, disable=not errors.is_terminal)


def _poll(api: Client, item: dict[str, Any], finished: Callable[[dict[str, Any]], bool],
          draw: Callable[[dict[str, Any]], None]) -> dict[str, Any]:
    delay = 0.1
    draw(item)
    while not finished(item):
        time.sleep(delay)
        delay = min(delay * 1.5, 1.0)
        item = api.get(item["href"])
        draw(item)
    return item


def _stopped_waiting(what: str, show: str) -> typer.Exit:
    note(f"stopped waiting; {what} continues on the server (see `{show}`)")
    return typer.Exit(130)


def wait_for(api: Client, task: dict[str, Any]) -> dict[str, Any]:
    """The task once finished, its progress drawn meanwhile: one bar per stage."""
    rows: dict[str, TaskID] = {}

    def draw(bar: Progress, task: dict[str, Any]) -> None:
        if not rows:
            rows[""] = bar.add_task("", total=None)
        bar.update(rows[""], description=f"task {task['id']} {task['name']}: {task['state']}",
                   visible=not task["progress"])
        for step in task["progress"]:
            if step["stage"] not in rows:
                rows[step["stage"]] = bar.add_task(f"task {task['id']}: {step['stage']}",
                                                   total=step["total"])
            bar.update(rows[step["stage"]], completed=step["done"], total=step["total"])

    try:
        with progress_bar() as bar:
            return _poll(api, task, lambda t: t["state"] in FINISHED, lambda t: draw(bar, t))
    except KeyboardInterrupt:
        raise _stopped_waiting(f"task {task['id']}", f"pallet task show {task['id']}") from None


def group_finished(group: dict[str, Any]) -> bool:
    return not (group["states"].get("waiting") or group["states"].get("running"))


def wait_for_group(api: Client, group: dict[str, Any]) -> dict[str, Any]:
    """The task group once none of its tasks waits or runs."""
    def draw(bar: Progress, row: TaskID, group: dict[str, Any]) -> None:
        total = sum(group["states"].values())
        finished = sum(group["states"].get(state, 0) for state in FINISHED)
        bar.update(row, completed=finished, total=total)

    try:
        with progress_bar() as bar:
            row = bar.add_task(f"task group {group['id']}: {group['description']}", total=None)
            return _poll(api, group, group_finished, lambda g: draw(bar, row, g))
    except KeyboardInterrupt:
        raise _stopped_waiting(f"task group {group['id']}",
                               f"pallet task group show {group['id']}") from None


def check(task: dict[str, Any]) -> dict[str, Any]:
    """The task if it completed; else say why not and exit 1."""
    label = f"task {task['id']} ({task['name']})"
    if task["state"] == "failed":
        fail(f"{label} failed: {(task['error'] or {}).get('message', 'no error recorded')}")
    if task["state"] == "canceled":
        fail(f"{label} was canceled")
    if task["state"] != "completed":
        fail(f"{label} has not finished: {task['state']}")
    return task


# How the results of some kinds of task read, by task name (registered by their commands'
# modules); other results print as fields.
RESULTS: dict[str, Describe] = {}


def describes(name: str) -> Callable[[Describe], Describe]:
    def register(describe: Describe) -> Describe:
        RESULTS[name] = describe
        return describe
    return register


def describe_result(task: dict[str, Any]) -> None:
    if task["result"]:
        RESULTS.get(task["name"], lambda t: record(t["result"]))(task)


def describe_task(task: dict[str, Any]) -> None:
    say(f"task {task['id']} ({task['name']}) completed")
    for href in task["created_resources"]:
        say(f"created {href}")
    describe_result(task)


def queued(item: dict[str, Any], kind: str, *, as_json: bool) -> None:
    """A task or task group just started, for commands that do not wait."""
    if as_json:
        emit_json(item)
    else:
        say(f"{kind} {item['id']} queued: {item['href']} (`pallet {kind} wait {item['id']}` "
            "waits for it)")


def report(api: Client, task: dict[str, Any], *, no_wait: bool, as_json: bool,
           describe: Describe = describe_task) -> dict[str, Any]:
    """How a command that started a task ends: at once, or as the task ends."""
    if no_wait:
        queued(task, "task", as_json=as_json)
        return task
    task = wait_for(api, task)
    if as_json:
        emit_json(task)
    check(task)
    if not as_json:
        describe(task)
    return task


def _stage(step: dict[str, Any]) -> str:
    return f"{step['stage']} {step['done']}/{step['total'] if step['total'] is not None else '?'}"


def _progress_cell(task: dict[str, Any]) -> str:
    return _stage(task["progress"][-1]) if task["progress"] else ""


TASK_FIELDS = ["id", "name", "state", "group", "worker", "created_by", "cancel_requested",
               ("locks", lambda t: ", ".join(f"{lock['resource']} "
                                             f"({'exclusive' if lock['exclusive'] else 'shared'})"
                                             for lock in t["locks"])),
               ("progress", lambda t: "; ".join(map(_stage, t["progress"]))),
               ("error", lambda t: t["error"] and t["error"]["message"]),
               "created_resources", "created_at", "started_at", "finished_at"]
TASK_COLUMNS = ["id", "name", "state", ("progress", _progress_cell), "created_by",
                "created_at", "finished_at"]

TaskId = Annotated[int, typer.Argument(help="The task's id.")]
GroupId = Annotated[int, typer.Argument(help="The task group's id.")]


@app.command("list")
def list_tasks(state: Annotated[str | None, typer.Option(
                   help="Only tasks in this state: waiting, running, completed, failed, "
                        "canceled.")] = None,
               name: Annotated[str | None, typer.Option(
                   help="Only tasks of this kind, e.g. repository.modify.")] = None,
               group: Annotated[int | None, typer.Option(help="Only tasks of this group.")
               ] = None,
               limit: Limit = None, offset: Offset = None, as_json: JsonFlag = False) -> None:
    """List tasks, newest first."""
    body = connect().page("tasks", state=state, name=name, group=group, limit=limit,
                          offset=offset)
    show_page(body, TASK_COLUMNS, as_json=as_json, noun="task")


@app.command("show")
def show_task(task_id: TaskId, as_json: JsonFlag = False) -> None:
    """Show a task: state, progress, error, what it created and its result."""
    task = connect().get(path("tasks", task_id))
    if as_json:
        emit_json(task)
        return
    record(task, TASK_FIELDS)
    if task["result"]:
        say("result:")
        describe_result(task)


@app.command("wait")
def wait_task(task_id: TaskId, as_json: JsonFlag = False) -> None:
    """Wait for a task; exit 1 if it fails or is canceled."""
    api = connect()
    report(api, api.get(path("tasks", task_id)), no_wait=False, as_json=as_json)


@app.command("cancel")
def cancel_task(task_id: TaskId, as_json: JsonFlag = False) -> None:
    """Cancel a task: a waiting one at once, a running one at its next progress report (or
    within a second or two if it waits on the network)."""
    task = connect().post(path("tasks", task_id, "cancel"))
    if as_json:
        emit_json(task)
    elif task["state"] == "canceled":
        say(f"task {task_id} canceled")
    else:
        say(f"task {task_id}: cancel requested; it stops at its next progress report, or "
            "within a second or two if it waits on the network")


@app.command("purge")
def purge_tasks(older_than_days: Annotated[float, typer.Option(
                    min=0, help="Purge tasks that finished at least this many days ago.")] = 30,
                state: Annotated[list[str] | None, typer.Option(
                    help="Only finished tasks in this state (completed, failed, canceled); "
                         "repeatable. Default: all three.")] = None,
                as_json: JsonFlag = False) -> None:
    """Delete old finished tasks."""
    body: dict[str, Any] = {"older_than_days": older_than_days}
    if state:
        body["states"] = state
    answer = connect().post("tasks/purge", body)
    if as_json:
        emit_json(answer)
    else:
        say(f"purged {answer['purged']} tasks")


GROUP_FIELDS = ["id", "description", "states", ("tasks", lambda g: len(g["tasks"])),
                "created_at"]


def group_tasks(api: Client, group: dict[str, Any]) -> list[dict[str, Any]]:
    return api.page("tasks", group=group["id"])["results"]


@group_app.command("show")
def show_group(group_id: GroupId, as_json: JsonFlag = False) -> None:
    """Show a task group and its tasks."""
    api = connect()
    group = api.get(path("task-groups", group_id))
    if as_json:
        emit_json(group)
        return
    record(group, GROUP_FIELDS)
    table(group_tasks(api, group), TASK_COLUMNS)


@group_app.command("wait")
def wait_group(group_id: GroupId, as_json: JsonFlag = False) -> None:
    """Wait for every task of a group; exit 1 if any failed or was canceled."""
    api = connect()
    group = wait_for_group(api, api.get(path("task-groups", group_id)))
    if as_json:
        emit_json(group)
    else:
        record(group, GROUP_FIELDS)
    unfinished = {s: n for s, n in group["states"].items() if s in ("failed", "canceled")}
    if unfinished:
        fail(f"task group {group_id}: " + ", ".join(f"{n} {s}" for s, n in unfinished.items()))


@group_app.command("cancel")
def cancel_group(group_id: GroupId, as_json: JsonFlag = False) -> None:
    """Cancel every task of a group that has not finished."""
    group = connect().post(path("task-groups", group_id, "cancel"))
    if as_json:
        emit_json(group)
    else:
        say(f"task group {group_id}: canceled its waiting tasks, asked its running ones to stop")
