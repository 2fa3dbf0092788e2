"""Task functions by name. A task function is `fn(runtime, task, **args)`; it opens its own
write transactions (usually one, at the end) and reports through `task` (a TaskContext)."""

from __future__ import annotations

import importlib
from typing import Callable

TASKS: dict[str, Callable] = {}

# Modules whose task functions a worker must know.
TASK_MODULES = ("pallet.repositories.tasks", "pallet.uploads.tasks", "pallet.remotes.tasks",
                "pallet.publications.tasks", "pallet.orphans.tasks",
                "pallet.transfer.tasks", "pallet.replication.tasks")


def task_function(name: str) -> Callable[[Callable], Callable]:
    def register(fn: Callable) -> Callable:
        if name in TASKS and TASKS[name] is not fn:
            raise ValueError(f"task {name!r} is defined twice")
        TASKS[name] = fn
        fn.task_name = name
        return fn
    return register


def load_task_modules() -> None:
    for module in TASK_MODULES:
        importlib.import_module(module)


def lookup(name: str) -> Callable:
    load_task_modules()
    return TASKS[name]
