"""Running Pallet: the embedded server (API, content app and workers in one process), the
API alone, the content app alone, or a worker alone."""

from __future__ import annotations

import fcntl
import logging
import os
import signal
import threading
from typing import IO

import uvicorn
from sqlalchemy.engine import make_url

from pallet.api.app import create_app, create_server_app
from pallet.auth.service import ensure_first_admin
from pallet.db.migrate import upgrade
from pallet.errors import Conflict
from pallet.runtime import Runtime
from pallet.settings import Settings
from pallet.tasks.worker import WorkerPool

log = logging.getLogger(__name__)


def configure_logging(settings: Settings) -> None:
    logging.basicConfig(level=settings.log_level.upper(),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")


def announce_first_admin(runtime: Runtime) -> None:
    with runtime.db.write() as session:
        password = ensure_first_admin(session, runtime.settings.admin_password)
    if password:
        print("Created the first user 'admin' with the password below. It is shown only "
              f"this once:\n\n    {password}\n", flush=True)


LOCK_FILE = "serve.lock"


def lock_data_dir(settings: Settings) -> IO[str] | None:
    """On SQLite, hold the data directory for this process's life, or refuse: two servers
    would each run workers, migrations and the first admin on one database file (PostgreSQL
    coordinates several). An OS lock, so a killed server leaves nothing to clean up. The
    open file must stay referenced: closing it releases the lock."""
    if make_url(settings.database_url).get_backend_name() != "sqlite":
        return None
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    held = open(settings.data_dir / LOCK_FILE, "a+")
    try:
        fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        held.seek(0)
        owner = held.read().strip() or "unknown"
        held.close()
        raise Conflict(f"the data directory {settings.data_dir} is in use by another `pallet "
                       f"serve` (process {owner}); stop it first, or use PostgreSQL to run "
                       "several", details={"data_dir": str(settings.data_dir)}) from None
    held.truncate(0)
    held.write(f"{os.getpid()}\n")
    held.flush()
    return held


def serve(settings: Settings, *, with_workers: bool = True, with_content: bool = True,
          migrate: bool = True) -> None:
    """The REST API, in the embedded server with the content app and worker threads, until
    interrupted."""
    configure_logging(settings)
    held = lock_data_dir(settings)  # noqa: F841  released when this function returns
    runtime = Runtime.create(settings)
    if migrate:
        upgrade(runtime.db, plugins=runtime.plugins)
    logging.getLogger("alembic").setLevel(logging.WARNING)  # status checks would chatter
    announce_first_admin(runtime)
    pool = WorkerPool(runtime, settings.workers if with_workers else 0)
    if with_workers and settings.workers:
        pool.start()
    app = create_server_app(runtime) if with_content else create_app(runtime)
    config = uvicorn.Config(app, host=settings.host, port=settings.port,
                            log_level=settings.log_level.lower(), access_log=False)
    try:
        uvicorn.Server(config).run()
    finally:
        pool.stop()
        runtime.close()


def serve_content(settings: Settings) -> None:
    """The content app alone (scale-out): no API, no workers, no migrations. It runs under
    Granian, which sends files with zero copies (`http.response.pathsend`); its process
    builds its own runtime from the same environment (PALLET_* and PALLET_CONFIG)."""
    from granian import Granian

    configure_logging(settings)
    Granian("pallet.contentapp.server:create", address=settings.host, port=settings.port,
            interface="asgi", factory=True, log_access=False,
            log_level=settings.log_level.lower()).serve()


def work(settings: Settings, *, threads: int = 1) -> None:
    """A worker process: claims and runs tasks until SIGTERM or SIGINT."""
    configure_logging(settings)
    runtime = Runtime.create(settings)
    pool = WorkerPool(runtime, threads)
    stopping = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stopping.set())
    pool.start()
    log.info("worker %s started", ", ".join(pool.names))
    stopping.wait()
    pool.stop()
    runtime.close()
