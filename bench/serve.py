"""Benchmark: the content app serving a 4 KiB and a 25 MiB file, beside nginx serving the same.

    python bench/serve.py [--duration S] [--rounds R] [--small-connections N]
                          [--large-connections N] [--nginx-workers N]
                          [--database sqlite|postgresql]

A fresh Pallet (database + artifact store) holds both files in a published, distributed `file`
repository; `pallet content-app` serves them as a real process. nginx (from Debian's packages;
installed if missing, like wrk and curl) serves the same bytes from a plain directory. `wrk`
measures each server in the same run, after a warm-up, alternating for a few rounds (the
median is reported): requests/s on the small file, throughput on the large one. Then the time
to first byte of an on-demand file: a second repository synced with the on_demand policy from
nginx, its first request (fetch, verify, store) and its second (from the store), beside
nginx's own for the same file.
Not a test: it prints figures. Exits 1 if a step fails (wrong bytes, non-2xx answers, ...).
See bench/README.md.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from contextlib import contextmanager
from pathlib import Path

from harness import DEFAULT_POSTGRES_URL, database, ensure_commands, free_port, nginx
from harness import wait_for_port

KiB, MiB = 1 << 10, 1 << 20
SMALL, LARGE = "small.bin", "large.bin"
ON_DEMAND, ON_DEMAND_2 = "on-demand.bin", "on-demand-2.bin"  # both fetched on demand
TARGETS = {SMALL: 0.3, LARGE: 0.7}  # at least this fraction of nginx's figure
FIGURE = {SMALL: "rps", LARGE: "bytes_per_s"}  # what the target is about
WARM_UP = 1
UNITS = {"us": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}
SIZES = {"B": 1, "KB": KiB, "MB": MiB, "GB": 1 << 30, "TB": 1 << 40}  # wrk's are binary


class Failed(Exception):
    """A step went wrong: the run reports it and exits 1."""


# -- the files --------------------------------------------------------------------------------

def make_files(root: Path, small: int, large: int) -> dict[str, str]:
    """files/ with the two served files, remote/ with a PULP_MANIFEST and two on-demand files,
    all readable by nginx's unprivileged worker. Returns {name: sha256}."""
    digests = {}
    for folder, name, size in (("files", SMALL, small), ("files", LARGE, large),
                               ("remote", ON_DEMAND, large), ("remote", ON_DEMAND_2, large)):
        (root / folder).mkdir(exist_ok=True)
        data = os.urandom(size)
        (root / folder / name).write_bytes(data)
        digests[name] = hashlib.sha256(data).hexdigest()
    (root / "remote" / "PULP_MANIFEST").write_text(
        "".join(f"{name},{digests[name]},{large}\n" for name in (ON_DEMAND, ON_DEMAND_2)))
    for path in [root, *root.rglob("*")]:
        path.chmod(0o755 if path.is_dir() else 0o644)
    return digests


# -- Pallet's side ----------------------------------------------------------------------------

def set_up_pallet(data_dir: Path, db_url: str, files: Path, manifest_url: str) -> None:
    """Migrate, then two distributed repositories: `bench` holding the two files (stored),
    `on-demand` synced with the on_demand policy from `manifest_url` (nothing stored)."""
    from pallet.db.migrate import upgrade
    from pallet.runtime import Runtime
    from pallet.settings import Settings

    runtime = Runtime.create(Settings(data_dir=data_dir, database_url=db_url))
    try:
        upgrade(runtime.db)
        stored_repository(runtime, [files / SMALL, files / LARGE])
        on_demand_repository(runtime, manifest_url)
    finally:
        runtime.close()


def stored_repository(runtime, paths: list[Path]) -> None:
    from pallet.artifacts.service import record_artifact
    from pallet.content.service import create_content
    from pallet.repositories.service import create_repository
    from pallet.repositories.versions import create_version

    stored = [(path.name, *runtime.storage.put_file(path)) for path in paths]
    with runtime.db.write() as session:
        ids = []
        for name, sha256, size in stored:
            record_artifact(session, sha256=sha256, size=size)
            content, _ = create_content(session, runtime.plugins, type="file",
                                        fields={"relative_path": name, "sha256": sha256})
            ids.append(content.id)
        repository = create_repository(session, runtime.plugins, name="bench", type="file")
        version = create_version(session, runtime.plugins, repository, add=ids)
        publish_and_distribute(session, runtime, repository, version, "bench")


def on_demand_repository(runtime, manifest_url: str) -> None:
    from pallet.remotes.models import Remote
    from pallet.repositories.models import Repository
    from pallet.repositories.service import create_repository
    from pallet.repositories.versions import latest_version
    from pallet.tasks.registry import lookup
    from pallet.tasks.worker import TaskContext

    with runtime.db.write() as session:
        remote = Remote(name="on-demand", type="file", url=manifest_url, policy="on_demand",
                        headers={})
        session.add(remote)
        repository = create_repository(session, runtime.plugins, name="on-demand", type="file")
        session.flush()
        remote_id, repository_id = remote.id, repository.id
    lookup("remote.sync")(runtime, TaskContext(0), repository_id=repository_id,
                          remote_id=remote_id, mirror=None)
    with runtime.db.write() as session:
        repository = session.get(Repository, repository_id)
        version = latest_version(session, repository)
        if version.number != 1:
            raise Failed(f"the on-demand sync made version {version.number}, not 1")
        publish_and_distribute(session, runtime, repository, version, "on-demand")


def publish_and_distribute(session, runtime, repository, version, base_path: str) -> None:
    from pallet.distributions.service import Target, create_distribution
    from pallet.publications.service import publish

    publication, _ = publish(session, runtime.plugins, runtime.storage, repository, version)
    # create_distribution calls serving_changed in this transaction
    create_distribution(session, name=base_path, base_path=base_path,
                        target=Target(publication_id=publication.id))


@contextmanager
def content_app(data_dir: Path, db_url: str):
    """`pallet content-app` as its own process; yields (base URL, pid). Stopped by its pid."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("PALLET_")}
    env.update(PALLET_DATA_DIR=str(data_dir), PALLET_DATABASE_URL=db_url,
               PALLET_LOG_LEVEL="warning")
    pallet = Path(sys.executable).with_name("pallet")
    log = open(data_dir / "content-app.log", "wb")
    process = subprocess.Popen([str(pallet) if pallet.exists() else "pallet", "content-app",
                                "--host", "127.0.0.1", "--port", str(port)],
                               env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        try:
            wait_for_port(port)
        except SystemExit as exc:
            raise Failed(f"{exc}; the content app's log:\n{read_log(data_dir)}") from None
        yield f"http://127.0.0.1:{port}/pallet/content", process.pid
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()


def read_log(data_dir: Path) -> str:
    return (data_dir / "content-app.log").read_text(errors="replace")[-4000:]


def memory_of(pid: int, field: str) -> float:
    """VmRSS or VmHWM of another process and its children (Granian serves from a worker
    process), in MiB."""
    with open(f"/proc/{pid}/status") as status:
        line = next(line for line in status if line.startswith(field + ":"))
    total = int(line.split()[1]) / 1024
    for task in Path(f"/proc/{pid}/task").iterdir():
        for child in (task / "children").read_text().split():
            total += memory_of(int(child), field)
    return total


# -- measuring --------------------------------------------------------------------------------

def check_bytes(url: str, sha256: str) -> None:
    digest = hashlib.sha256()
    try:
        with urllib.request.urlopen(url, timeout=60) as response:
            while block := response.read(MiB):
                digest.update(block)
    except OSError as exc:
        raise Failed(f"GET {url}: {exc}") from None
    if digest.hexdigest() != sha256:
        raise Failed(f"GET {url}: the bytes have sha256 {digest.hexdigest()}, not {sha256}")


def wrk(url: str, threads: int, connections: int, seconds: int) -> dict:
    command = ["wrk", f"-t{threads}", f"-c{connections}", f"-d{seconds}s", "--latency", url]
    done = subprocess.run(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          text=True, timeout=seconds + 60)
    if done.returncode:
        raise Failed(f"{' '.join(command)} exited with {done.returncode}:\n{done.stdout}")
    return parse_wrk(done.stdout, " ".join(command))


def parse_wrk(output: str, command: str) -> dict:
    def find(pattern: str) -> re.Match:
        match = re.search(pattern, output, re.MULTILINE)
        if match is None:
            raise Failed(f"no {pattern!r} in the output of {command}:\n{output}")
        return match

    if "Non-2xx or 3xx responses" in output:
        raise Failed(f"{command} got answers other than 2xx or 3xx:\n{output}")
    transfer = find(r"^Transfer/sec:\s+([\d.]+)(\w+)")
    if int(find(r"^\s+(\d+) requests in").group(1)) == 0:
        raise Failed(f"{command} completed no request:\n{output}")
    errors = re.search(r"Socket errors: (.*)$", output, re.MULTILINE)
    return {"rps": float(find(r"^Requests/sec:\s+([\d.]+)").group(1)),
            "bytes_per_s": float(transfer.group(1)) * SIZES[transfer.group(2)],
            "p50": latency(find(r"^\s+50%\s+([\d.]+)(\w+)")),
            "p99": latency(find(r"^\s+99%\s+([\d.]+)(\w+)")),
            "errors": errors.group(1) if errors else ""}


def latency(match: re.Match) -> float:
    return float(match.group(1)) * UNITS[match.group(2)]


def load(urls: dict[str, str], args) -> dict:
    """wrk against each server for each file, warm-up first; the servers alternate, round
    after round, so load from elsewhere on the machine falls on both alike.
    Returns {(file, server): [figures of each round]}."""
    runs = {SMALL: (1, args.small_connections), LARGE: (2, args.large_connections)}
    results: dict = {}
    for round in range(1, args.rounds + 1):
        for name, (threads, connections) in runs.items():
            for server, base in urls.items():
                url = f"{base}/{name}"
                print(f"round {round}: wrk -t{threads} -c{connections} {server} {name} ...",
                      file=sys.stderr, flush=True)
                wrk(url, threads, connections, WARM_UP)
                results.setdefault((name, server), []).append(
                    wrk(url, threads, connections, args.duration))
    return results


def curl_timing(url: str) -> tuple[float, float]:
    """(time to first byte, total time) of one GET with curl, in seconds."""
    done = subprocess.run(["curl", "-s", "-o", "/dev/null", "--max-time", "120", "-w",
                           "%{http_code} %{time_starttransfer} %{time_total}", url],
                          stdout=subprocess.PIPE, text=True)
    fields = done.stdout.split()
    if done.returncode or len(fields) != 3 or fields[0] != "200":
        raise Failed(f"curl {url}: exit code {done.returncode}, answer {done.stdout!r}")
    return float(fields[1]), float(fields[2])


def on_demand(pallet_url: str, nginx_url: str, data_dir: Path, digests: dict) -> dict:
    """The on-demand file's first and second request through Pallet, the first request of a
    second file of the same remote (the content app's downloader for it is open by then),
    then the first file from nginx."""
    from pallet.artifacts.storage import LocalStorage

    print("on-demand time to first byte ...", file=sys.stderr, flush=True)
    store = LocalStorage(data_dir / "artifacts")
    timings = {}
    for key, name in (("first", ON_DEMAND), ("second", ON_DEMAND), ("other", ON_DEMAND_2)):
        url, sha256 = f"{pallet_url}/on-demand/{name}", digests[name]
        if key != "second" and store.exists(sha256):
            raise Failed(f"{name} is stored before anyone asked for it")
        timings[key] = curl_timing(url)
        deadline = time.monotonic() + 10
        while not store.exists(sha256):  # stored as it is relayed; allow for the final rename
            if time.monotonic() > deadline:
                raise Failed(f"{name} was not stored after its first request")
            time.sleep(0.05)
        check_bytes(url, sha256)
    timings["nginx"] = curl_timing(f"{nginx_url}/remote/{ON_DEMAND}")
    return timings


def measure(args) -> dict:
    ensure_commands({"wrk": "wrk", "nginx": "nginx", "curl": "curl"})
    root = Path(tempfile.mkdtemp(prefix="pallet-bench-serve-"))
    try:
        digests = make_files(root, args.small_size, args.large_size)
        with nginx(root, workers=args.nginx_workers) as nginx_url, \
                database(args.database, args.postgres_url) as (db_url, data_dir):
            print("setting up Pallet ...", file=sys.stderr, flush=True)
            set_up_pallet(data_dir, db_url, root / "files",
                          f"{nginx_url}/remote/PULP_MANIFEST")
            with content_app(data_dir, db_url) as (pallet_url, pid):
                urls = {"nginx": f"{nginx_url}/files", "pallet": f"{pallet_url}/bench"}
                for name in (SMALL, LARGE):
                    for base in urls.values():
                        check_bytes(f"{base}/{name}", digests[name])
                started_mb = memory_of(pid, "VmRSS")
                results = {"wrk": load(urls, args), "started_mb": started_mb}
                results["ttfb"] = on_demand(pallet_url, nginx_url, data_dir, digests)
                results["peak_mb"] = memory_of(pid, "VmHWM")
        return results
    finally:
        shutil.rmtree(root, ignore_errors=True)


# -- the report -------------------------------------------------------------------------------

def report(results: dict, args) -> None:
    print(f"\nServing on 127.0.0.1: `pallet content-app` (one process) beside nginx "
          f"({args.nginx_workers} worker{'s' * (args.nginx_workers != 1)}, sendfile), "
          f"database {args.database};\nwrk for {args.duration} s per run after a "
          f"{WARM_UP} s warm-up, {args.rounds} round(s); each row is the server's median run\n")
    print(f"{'file':<9}{'wrk':<11}{'server':<8}{'req/s':>10}{'MiB/s':>9}{'p50':>10}"
          f"{'p99':>10}{'x nginx':>9}  {'target':<14}{'each round':<20}errors")
    runs = {SMALL: (size_label(args.small_size), f"-t1 -c{args.small_connections}"),
            LARGE: (size_label(args.large_size), f"-t2 -c{args.large_connections}")}
    for name, (label, options) in runs.items():
        figure = FIGURE[name]
        rounds = {server: results["wrk"][(name, server)] for server in ("nginx", "pallet")}
        medians = {server: median(figures, figure) for server, figures in rounds.items()}
        for server, f in medians.items():
            ratio = target = each = ""
            if server == "pallet":
                share = f[figure] / medians["nginx"][figure]
                ratio = f"{share:.2f}x"
                target = f">= {TARGETS[name]:g} {'met' if share >= TARGETS[name] else 'MISSED'}"
                each = " ".join(f"{p[figure] / n[figure]:.2f}"
                                for p, n in zip(rounds["pallet"], rounds["nginx"]))
            print(f"{label:<9}{options:<11}{server:<8}{f['rps']:>10,.0f}"
                  f"{f['bytes_per_s'] / MiB:>9,.0f}{milliseconds(f['p50']):>10}"
                  f"{milliseconds(f['p99']):>10}{ratio:>9}  {target:<14}{each:<20}"
                  f"{f['errors']}")
            label, options = "", ""
    print("\nx nginx: the ratio of the median runs' requests/s (small file) or throughput (large "
          "file); each round:\nthe ratio of the two runs made one after the other in that round.")
    print(f"Content app RSS (its processes together): "
          f"{results['started_mb']:.0f} MB after start, peak {results['peak_mb']:.0f} MB "
          f"(VmHWM at the end).")
    print(f"\nOn-demand file of {size_label(args.large_size)}, remote: nginx on 127.0.0.1\n")
    print(f"{'request':<54}{'first byte':>11}{'total':>11}")
    labels = {"first": "pallet, first request (fetch, verify, store)",
              "second": "pallet, second request (from the store)",
              "other": "pallet, first request of a second file of the remote",
              "nginx": "nginx, the first file"}
    for key, label in labels.items():
        first_byte, total = results["ttfb"][key]
        print(f"{label:<54}{milliseconds(first_byte):>11}{milliseconds(total):>11}")
    print("\nwrk's latencies are per request under load; curl's times are one request on an "
          "idle server.")


def median(runs: list[dict], figure: str) -> dict:
    """The run whose `figure` is the median (the lower one of an even count)."""
    return sorted(runs, key=lambda run: run[figure])[(len(runs) - 1) // 2]


def size_label(size: int) -> str:
    return f"{size / MiB:g} MiB" if size >= MiB else f"{size / KiB:g} KiB"


def milliseconds(seconds: float) -> str:
    return f"{seconds * 1000:.2f} ms"


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=int, default=10, help="seconds per wrk run")
    parser.add_argument("--small-connections", type=int, default=32)
    parser.add_argument("--large-connections", type=int, default=8)
    parser.add_argument("--nginx-workers", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=3,
                        help="wrk runs per server and file; the median is reported")
    parser.add_argument("--small-size", type=int, default=4 * KiB, help=argparse.SUPPRESS)
    parser.add_argument("--large-size", type=int, default=25 * MiB, help=argparse.SUPPRESS)
    parser.add_argument("--database", choices=("sqlite", "postgresql"), default="sqlite")
    parser.add_argument("--postgres-url", default=DEFAULT_POSTGRES_URL)
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    try:
        results = measure(args)
    except Failed as exc:
        print(f"serve: {exc}", file=sys.stderr)
        return 1
    report(results, args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
