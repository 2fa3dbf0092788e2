"""One `pallet serve` per data directory on SQLite: a second one is refused in one line; the
lock goes with the process, however it ends. Real processes, stopped by their PID."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import pytest

from tests.processes import free_port, stop
from tests.servers import Servers
from tests.test_cli import PASSWORD, _wait_until_ready


def _env(data_dir, database_url: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PALLET_")}
    env.update(PALLET_DATA_DIR=str(data_dir), PALLET_DATABASE_URL=database_url,
               PALLET_ADMIN_PASSWORD=PASSWORD, PALLET_WORKERS="1", PALLET_LOG_LEVEL="warning")
    return env


def _start(env: dict[str, str], log_path) -> tuple[subprocess.Popen, str]:
    """A `pallet serve` on a free port, once it answers; and its URL."""
    port = free_port()
    with open(log_path, "ab") as log:
        process = subprocess.Popen([sys.executable, "-m", "pallet.cli.main", "serve"],
                                   env={**env, "PALLET_PORT": str(port)}, stdout=log,
                                   stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_until_ready(url, process, log_path)
    except BaseException:
        stop(process)
        raise
    return process, url


@pytest.mark.slow
def test_a_second_serve_on_sqlite_is_refused_until_the_first_dies(tmp_path):
    data = tmp_path / "data"
    env = _env(data, f"sqlite:///{tmp_path / 'pallet.db'}")
    first, _ = _start(env, tmp_path / "first.log")
    try:
        second = subprocess.run([sys.executable, "-m", "pallet.cli.main", "serve"],
                                env={**env, "PALLET_PORT": str(free_port())},
                                capture_output=True, text=True, timeout=30)
        assert second.returncode == 1, second.stderr
        assert second.stderr == (
            f"error: the data directory {data} is in use by another `pallet serve` (process "
            f"{first.pid}); stop it first, or use PostgreSQL to run several\n")
        assert first.poll() is None  # the first one serves on

        first.send_signal(signal.SIGKILL)  # no clean-up at all: the OS releases the lock
        first.wait(10)
        third, _ = _start(env, tmp_path / "third.log")
        stop(third)
    finally:
        stop(first)


@pytest.fixture
def servers(tmp_path):
    servers = Servers(tmp_path)
    yield servers
    servers.close()


@pytest.mark.slow
@pytest.mark.skipif(not os.environ.get("PALLET_TEST_DATABASE_URL"),
                    reason="needs PostgreSQL (PALLET_TEST_DATABASE_URL)")
def test_on_postgresql_several_serves_share_a_data_directory(servers, tmp_path):
    first = servers.start("one")
    second, _ = _start(first.env, tmp_path / "second.log")
    try:
        assert first.process.poll() is None
    finally:
        stop(second)
