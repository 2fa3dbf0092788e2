"""What the benchmarks share: timing, memory, fresh databases, nginx and wrk.

Imported by the scripts beside it (`python bench/<name>.py` puts this folder on sys.path).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import create_engine
from sqlalchemy.engine import make_url

DEFAULT_POSTGRES_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"


def timed(function, *args, **kwargs):
    start = time.perf_counter()
    result = function(*args, **kwargs)
    return result, time.perf_counter() - start


def memory_mb(field: str) -> float:
    """VmRSS (now) or VmHWM (peak) of this process, from /proc (Linux)."""
    with open("/proc/self/status") as status:
        line = next(line for line in status if line.startswith(field + ":"))
    return int(line.split()[1]) / 1024


def reset_peak() -> float:
    """Restart this process's peak-RSS count from now; return the RSS now."""
    with open("/proc/self/clear_refs", "w") as clear_refs:
        clear_refs.write("5")
    return memory_mb("VmRSS")


@contextmanager
def database(kind: str, postgres_url: str = DEFAULT_POSTGRES_URL, parent: Path | None = None):
    """A fresh empty database of `kind` and a data directory (in `parent`, else the
    temporary folder), both removed afterwards."""
    data_dir = Path(tempfile.mkdtemp(prefix="pallet-bench-", dir=parent))
    try:
        if kind == "sqlite":
            yield f"sqlite:///{data_dir / 'pallet.db'}", data_dir
            return
        name = f"pallet_bench_{uuid.uuid4().hex[:12]}"
        admin = create_engine(postgres_url, isolation_level="AUTOCOMMIT")
        with admin.connect() as connection:
            connection.exec_driver_sql(f'CREATE DATABASE "{name}"')
        try:
            yield make_url(postgres_url).set(database=name).render_as_string(False), data_dir
        finally:
            with admin.connect() as connection:
                connection.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            admin.dispose()
    finally:
        shutil.rmtree(data_dir, ignore_errors=True)


def workload_options(parser) -> None:
    """The options of the two standard workloads (10,000 x 4 KiB, 40 x 25 MiB) and of the
    databases to run them on."""
    parser.add_argument("--small", type=int, default=10_000,
                        help="files in the small workload (0: skip it)")
    parser.add_argument("--small-size", type=int, default=4096)
    parser.add_argument("--large", type=int, default=40,
                        help="files in the large workload (0: skip it)")
    parser.add_argument("--large-size", type=int, default=25 << 20)
    parser.add_argument("--database", choices=("sqlite", "postgresql", "both"),
                        default="sqlite")
    parser.add_argument("--postgres-url", default=DEFAULT_POSTGRES_URL)


def workloads(args) -> dict[str, tuple[int, int, int]]:
    """The workloads `workload_options` asked for, by name: (files, size, folders); one of
    0 files is left out."""
    asked = {"small": (args.small, args.small_size, 100),
             "large": (args.large, args.large_size, 1)}
    return {name: workload for name, workload in asked.items() if workload[0]}


def database_kinds(args) -> tuple[str, ...]:
    """The databases `--database` asked for."""
    return ("sqlite", "postgresql") if args.database == "both" else (args.database,)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def ensure_commands(packages: dict[str, str]) -> None:
    """Install the Debian packages of missing commands ({command: package}), as root."""
    missing = sorted({package for command, package in packages.items()
                      if shutil.which(command) is None and not Path(f"/usr/sbin/{command}").exists()})
    if not missing:
        return
    print(f"installing {', '.join(missing)} from Debian's packages ...", file=sys.stderr)
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    subprocess.run(["apt-get", "update", "-qq"], check=True, env=env)
    subprocess.run(["apt-get", "install", "-y", "-qq", *missing], check=True, env=env,
                   stdout=subprocess.DEVNULL)


async def download_checked(session, url: str, path: Path, sha256: str) -> int:
    """GET `url` with an aiohttp session into `path`, hashing it on the way; exits if its
    sha256 is not `sha256`. Returns the bytes written."""
    path.parent.mkdir(parents=True, exist_ok=True)
    digest = hashlib.sha256()
    size = 0
    async with session.get(url) as response:
        response.raise_for_status()
        with open(path, "wb") as out:
            async for block in response.content.iter_chunked(1 << 20):
                digest.update(block)
                out.write(block)
                size += len(block)
    if digest.hexdigest() != sha256:
        raise SystemExit(f"{url}: digest mismatch")
    return size


def nginx_binary() -> str:
    return shutil.which("nginx") or "/usr/sbin/nginx"


@contextmanager
def nginx(root: Path, workers: int = 1):
    """nginx serving `root` on 127.0.0.1 with sendfile; yields its base URL."""
    port = free_port()
    work = Path(tempfile.mkdtemp(prefix="pallet-bench-nginx-"))
    (work / "conf").write_text(f"""
worker_processes {workers};
daemon off;
pid {work}/nginx.pid;
error_log {work}/error.log warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    sendfile on;
    tcp_nopush on;
    keepalive_requests 1000000;
    client_body_temp_path {work}/body;
    proxy_temp_path {work}/proxy;
    fastcgi_temp_path {work}/fastcgi;
    uwsgi_temp_path {work}/uwsgi;
    scgi_temp_path {work}/scgi;
    default_type application/octet-stream;
    server {{
        listen 127.0.0.1:{port};
        root {root};
        autoindex on;
    }}
}}
""")
    process = subprocess.Popen([nginx_binary(), "-c", str(work / "conf"), "-p", str(work)],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for_port(port)
        yield f"http://127.0.0.1:{port}"
    finally:
        process.terminate()
        process.wait(timeout=10)
        shutil.rmtree(work, ignore_errors=True)


def wait_for_port(port: int, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as probe:
            if probe.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise SystemExit(f"nothing listens on 127.0.0.1:{port} after {timeout:g} s")
