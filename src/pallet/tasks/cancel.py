"""Cancel that reaches a task wherever it waits.

A task sees a cancel at its next progress report; a task blocked on the network reports
nothing until a byte comes. So the runner makes the running task's `CancelEvent` current (a
context variable, inherited by the task's coroutines and `asyncio.to_thread`), and whatever
blocks registers, with `on_cancel`, how to wake itself: the outgoing HTTP clients
(`pallet.remotes.outgoing`) shut their sockets down or cancel their coroutine. Outside a
task (the content app, the CLI) there is no current event and `on_cancel` does nothing.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import threading
from contextvars import ContextVar
from typing import Callable, Iterator

from pallet.errors import Canceled

log = logging.getLogger(__name__)

_current: ContextVar["CancelEvent | None"] = ContextVar("pallet_task_cancel", default=None)


class CancelEvent(threading.Event):
    """Set when the task is asked to stop; setting it also runs the hooks of the waits in
    progress (each at most once, from the thread that sets it)."""

    def __init__(self) -> None:
        super().__init__()
        self._hooks: dict[int, Callable[[], None]] = {}
        self._keys = itertools.count()
        self._hooks_lock = threading.Lock()

    def set(self) -> None:
        with self._hooks_lock:
            hooks, self._hooks = list(self._hooks.values()), {}
            super().set()
        for hook in hooks:
            _run(hook)

    def add_hook(self, hook: Callable[[], None]) -> Callable[[], None]:
        """Run `hook` when the event is set (at once if it is); returns its remover."""
        with self._hooks_lock:
            if not self.is_set():
                key = next(self._keys)
                self._hooks[key] = hook
                return lambda: self._remove(key)
        _run(hook)
        return lambda: None

    def _remove(self, key: int) -> None:
        with self._hooks_lock:
            self._hooks.pop(key, None)


def _run(hook: Callable[[], None]) -> None:
    try:
        hook()
    except Exception:  # a hook must not stop the others, nor the reporter that set it
        log.warning("a cancel hook failed", exc_info=True)


@contextlib.contextmanager
def running(event: CancelEvent) -> Iterator[None]:
    """Make `event` the running task's, in this thread, for the duration."""
    token = _current.set(event)
    try:
        yield
    finally:
        _current.reset(token)


def on_cancel(hook: Callable[[], None]) -> Callable[[], None]:
    """Run `hook` (from another thread) if the running task is canceled; returns a remover.
    Outside a task, nothing happens."""
    event = _current.get()
    return event.add_hook(hook) if event is not None else (lambda: None)


def check() -> None:
    """Raise Canceled if the running task was asked to stop (for waits that poll)."""
    event = _current.get()
    if event is not None and event.is_set():
        raise Canceled("the task was canceled")
