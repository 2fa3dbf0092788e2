"""The running server's parts, built once from the settings and passed explicitly."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

from pallet.artifacts.storage import LocalStorage
from pallet.db import Database
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

    @classmethod
    def create(cls, settings: Settings) -> "Runtime":
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        return cls(settings=settings, db=Database(settings.database_url),
                   storage=LocalStorage(settings.artifacts_dir), plugins=load_plugins())

    def close(self) -> None:
        self.db.dispose()
