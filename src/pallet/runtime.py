"""The running server's parts, built once from the settings and passed explicitly."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

from pallet.artifacts.storage import LocalStorage
import pallet.db.models  # noqa: F401  every table, so foreign keys resolve in any process
from pallet.db import Database
from pallet.distributions import serving
from pallet.plugins import Registry, load_plugins
from pallet.settings import Settings


@dataclass
class Runtime:
    settings: Settings
    db: Database
    storage: LocalStorage
    plugins: Registry
    # Set when a task is queued, so in-process workers start it without waiting for a poll.
    wakeup: threading.Event = field(default_factory=threading.Event)
    # Grows after each commit in this process that changed what the content app serves, so
    # its caches here drop stale entries at once (other processes poll the database); the
    # writes themselves say so (distributions/serving.py).
    serving_epoch: int = 0

    def __post_init__(self) -> None:
        serving.watch(self.db, self._serving_committed)

    def _serving_committed(self) -> None:
        self.serving_epoch += 1

    @classmethod
    def create(cls, settings: Settings) -> "Runtime":
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        return cls(settings=settings, db=Database(settings.database_url),
                   storage=LocalStorage(settings.artifacts_dir), plugins=load_plugins())

    def close(self) -> None:
        self.db.dispose()
        self.storage.close()
