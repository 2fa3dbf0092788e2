"""Small downloaded files on their way into the artifact store, off the event loop.

One thread takes whatever files are waiting, as many as there are (up to GROUP), verifies
and stores them with one `storage.put_many` call, and wakes the event loop once for the
whole group. Handing each file to a pool thread of its own instead cost more than storing
it: a thread wake-up and an event-loop wake-up per file, and ten threads fighting the event
loop for the GIL on a small machine.

Memory stays bounded by the callers: each awaits its file's future, so no more files wait
here than there are download workers.
"""

from __future__ import annotations

import asyncio
import queue
import threading

from pallet.artifacts.storage import ArtifactStorage

GROUP = 256  # files stored per hand-off at most

_Item = tuple[bytes, str, asyncio.Future]


class SmallFiles:
    """`await small_files.store(data, sha256)` -> size, once the bytes are verified and in
    the store (not yet durable: the caller flushes the storage before recording them)."""

    def __init__(self, storage: ArtifactStorage) -> None:
        self.storage = storage
        self._queue: queue.SimpleQueue[list[_Item] | None] = queue.SimpleQueue()
        self._outgoing: list[_Item] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None

    def store(self, data: bytes, sha256: str) -> asyncio.Future:
        """A future for the size of `data`, stored under `sha256` if it hashes to it; else it
        fails with DigestMismatch (or the OSError of the store's disk)."""
        if self._thread is None:
            self._loop = asyncio.get_running_loop()
            self._thread = threading.Thread(target=self._run, name="download-small",
                                            daemon=True)
            self._thread.start()
        future = self._loop.create_future()
        if not self._outgoing:  # handed over once the event loop is done with its events
            self._loop.call_soon(self._hand_off)
        self._outgoing.append((data, sha256, future))
        return future

    def close(self) -> None:
        """Store what is queued, then stop the thread (blocks until it has)."""
        if self._thread is not None:
            self._hand_off()
            self._queue.put(None)
            self._thread.join()
            self._thread = None

    def _hand_off(self) -> None:
        # One queue entry (and so at most one thread wake-up) for the files of one round of
        # the event loop: waking the thread costs more than storing a small file.
        if self._outgoing:
            self._queue.put(self._outgoing)
            self._outgoing = []

    # -- the thread ---------------------------------------------------------------------------

    def _run(self) -> None:
        stopping = False
        while not stopping:
            items = self._queue.get()
            if items is None:
                return
            group = list(items)
            while len(group) < GROUP:
                try:
                    items = self._queue.get_nowait()
                except queue.Empty:
                    break
                if items is None:
                    stopping = True
                    break
                group.extend(items)
            try:
                results = self.storage.put_many([(data, sha) for data, sha, _ in group],
                                                durable=False)
            except BaseException as exc:  # not one file's failure: every one of them fails
                results = [exc] * len(group)
            try:
                self._loop.call_soon_threadsafe(_settle, [f for _, _, f in group], results)
            except RuntimeError:  # the event loop is closed: nobody waits any more
                return


def _settle(futures: list[asyncio.Future], results: list) -> None:
    for future, result in zip(futures, results):
        if future.done():  # its download was canceled
            continue
        if isinstance(result, BaseException):
            future.set_exception(result)
        else:
            future.set_result(result)
