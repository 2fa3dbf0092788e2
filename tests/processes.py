"""Real Pallet processes for tests: started here, stopped by their PID."""

from __future__ import annotations

import itertools
import os
import signal
import socket
import subprocess
import sys
import time

from sqlalchemy import func, insert, select

from pallet.content.identity import identity_digest
from pallet.content.models import Content

# How long a started `pallet serve` may take to answer: about 1 s on an idle machine, but
# up to 30 s was seen on 2 cores under other load, which failed tests that did nothing wrong.
SERVER_START_SECONDS = 90


# Ports for servers a test starts: each pytest-xdist worker takes its own range, below the
# kernel's ephemeral ports (32768 and up). A port the kernel picks (bind to 0) and releases can
# be handed to another worker's server before this one binds it, and a test then talks to the
# wrong server.
_WORKER = int(os.environ.get("PYTEST_XDIST_WORKER", "gw0").removeprefix("gw") or 0)
_PORTS = itertools.cycle(range(20_000 + 1_000 * (_WORKER % 12), 21_000 + 1_000 * (_WORKER % 12)))


def free_port() -> int:
    """A port of 127.0.0.1 that nothing listens on, from this worker's range."""
    for port in _PORTS:
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise AssertionError("unreachable")


def pallet_env(settings, **extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update(PALLET_DATA_DIR=str(settings.data_dir), PALLET_DATABASE_URL=settings.database_url,
               PALLET_WORKER_HEARTBEAT_SECONDS="0.5", PALLET_WORKER_TIMEOUT_SECONDS="3",
               PALLET_TASK_POLL_SECONDS="0.1", PALLET_LOG_LEVEL="warning")
    env.update(extra)
    return env


def start_worker(settings, log_path) -> subprocess.Popen:
    log = open(log_path, "ab")
    return subprocess.Popen([sys.executable, "-m", "pallet.cli.main", "worker"],
                            env=pallet_env(settings), stdout=log, stderr=subprocess.STDOUT)


def stop(process: subprocess.Popen, timeout: float = 10) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def wait_until(predicate, timeout: float, message: str, interval: float = 0.05):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(message)


def bulk_file_units(runtime, count: int, prefix: str) -> list[int]:
    """Many file units at once, without artifacts (versioning does not need their bytes)."""
    rows = []
    for i in range(count):
        key = {"relative_path": f"{prefix}/{i}", "sha256": f"{i:064x}"}
        rows.append({"type": "file", "digest": identity_digest("file", key), "data": key})
    with runtime.db.write() as session:
        before = session.scalar(select(func.max(Content.id))) or 0
        for start in range(0, count, 10_000):
            session.execute(insert(Content), rows[start:start + 10_000])
        return list(session.scalars(select(Content.id).where(Content.id > before)
                                    .order_by(Content.id)))
