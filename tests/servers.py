"""Real `pallet serve` processes for tests that need two servers: each with its own data
directory, database (a fresh PostgreSQL database when the suite runs on PostgreSQL, else a
SQLite file) and port, stopped by their PID when the test ends."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from tests.processes import free_port, stop
from tests.conftest import wait_for_task
from tests.test_cli import PASSWORD, _wait_until_ready

API = "/api/v1"


@dataclass
class Server:
    name: str
    url: str
    port: int
    data_dir: Path
    process: subprocess.Popen | None
    env: dict[str, str]


class Servers:
    def __init__(self, tmp_path: Path) -> None:
        self.tmp_path = tmp_path
        self.started: list[Server] = []
        self._drops: list = []

    def _database(self, name: str) -> str:
        server = os.environ.get("PALLET_TEST_DATABASE_URL")
        if not server:
            return f"sqlite:///{self.tmp_path / f'{name}.db'}"
        database = f"pallet_srv_{uuid.uuid4().hex[:12]}"
        admin = create_engine(server, isolation_level="AUTOCOMMIT")
        with admin.connect() as connection:
            connection.execute(text(f'CREATE DATABASE "{database}"'))

        def drop() -> None:
            with admin.connect() as connection:
                connection.execute(text(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)'))
            admin.dispose()
        self._drops.append(drop)
        return make_url(server).set(database=database).render_as_string(hide_password=False)

    def start(self, name: str, **settings: str) -> Server:
        """`pallet serve` for a server `name`; `settings`: more PALLET_* variables."""
        port = free_port()
        data_dir = self.tmp_path / name
        data_dir.mkdir(exist_ok=True)
        env = dict(os.environ, PALLET_DATA_DIR=str(data_dir), PALLET_PORT=str(port),
                   PALLET_ADMIN_PASSWORD=PASSWORD, PALLET_WORKERS="2",
                   PALLET_DATABASE_URL=self._database(name), PALLET_TASK_POLL_SECONDS="0.1",
                   PALLET_LOG_LEVEL="warning")
        env.update(settings)  # more variables, or other values than these
        env.pop("PALLET_CONFIG", None)
        server = Server(name, f"http://127.0.0.1:{port}", port, data_dir, None, env)
        self.started.append(server)
        return self._run(server)

    def restart(self, server: Server) -> Server:
        """The same server again (data, database, port), after its process ended."""
        stop(server.process)
        return self._run(server)

    def _run(self, server: Server) -> Server:
        log_path = server.data_dir / "server.log"
        with open(log_path, "ab") as log:
            server.process = subprocess.Popen(
                [sys.executable, "-m", "pallet.cli.main", "serve"], env=server.env,
                stdout=log, stderr=subprocess.STDOUT)
        _wait_until_ready(server.url, server.process, log_path)
        return server

    def close(self) -> None:
        for server in self.started:
            stop(server.process)
        for drop in self._drops:
            drop()


@pytest.fixture
def servers(tmp_path):
    """Real servers for one test, each stopped when it ends."""
    running = Servers(tmp_path)
    yield running
    running.close()


def api_of(server: Server) -> httpx.Client:
    """An API client of `server`, as its first admin."""
    return httpx.Client(base_url=f"{server.url}{API}", auth=("admin", PASSWORD), timeout=60)


def completed(api: httpx.Client, response: httpx.Response) -> dict:
    """The task `response` started, once it completed (else the test fails with its error)."""
    assert response.status_code == 202, response.text
    task = wait_for_task(api, response.json()["href"].removeprefix(API), timeout=120)
    assert task["state"] == "completed", task["error"]
    return task
