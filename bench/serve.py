"""Benchmark: Pallet's two servers serving what a fleet asks for, beside nginx serving the same.

    python bench/serve.py [--workloads single,distinct,dnf] [--paths 10000,100000]
                          [--dnf-packages N] [--dnf-per-client N] [--duration S] [--rounds R]
                          [--small-connections N] [--large-connections N] [--nginx-workers N]
                          [--database sqlite|postgresql]

A fresh Pallet (database + artifact store) holds published, distributed repositories:
`single`, a 4 KiB and a 25 MiB file (the same file over and over: the content app's cache
hits); `distinct`, a `file` repository of N distinct 4 KiB files for each N of --paths, asked
for in turn by a wrk Lua script that walks the whole path list; `dnf`, an `rpm` repository
of --dnf-packages packages (4 KiB files) published by the publication task, asked for as dnf
clients do: repomd.xml, primary, filelists and other, then packages. `pallet content-app` and
`pallet serve` (API, workers and content app in one process) serve them as real processes
against the same data directory and database. nginx (from Debian's packages; installed if
missing, like wrk and curl) serves the same bytes from a plain directory. `wrk` measures each
server in the same run, after a warm-up, alternating for a few rounds (the median is
reported). Then the time to first byte of an on-demand file: a repository synced with the
on_demand policy from nginx, its first request (fetch, verify, store) and its second (from
the store), beside nginx's own for the same file.
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
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

from harness import DEFAULT_POSTGRES_URL, database, ensure_commands, free_port, nginx
from harness import wait_for_port

KiB, MiB = 1 << 10, 1 << 20
SMALL, LARGE = "small.bin", "large.bin"
ON_DEMAND, ON_DEMAND_2 = "on-demand.bin", "on-demand-2.bin"  # both fetched on demand
TARGETS = {SMALL: 0.3, LARGE: 0.7}  # at least this fraction of nginx's figure
LIST_TARGET = 0.3  # distinct paths and dnf: requests/s, at least this fraction of nginx's
WORKLOADS = ("single", "distinct", "dnf")
DNF_FILE_SIZE = 4 * KiB  # each package's file: random bytes, not an RPM
PASSWORD = "bench-serve-password"
WARM_UP = 1
UNITS = {"us": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}
SIZES = {"B": 1, "KB": KiB, "MB": MiB, "GB": 1 << 30, "TB": 1 << 40}  # wrk's are binary

# wrk walks a list of paths: each thread from its own offset (thread k of T starts k/T of
# the way in), the thread's connections taking the next path in turn, round and round.
# Arguments after `--`: the prefix of every path, the file of paths (one a line), T.
WALK_LUA = """
local count, paths, n, i = 0, {}, 0, 0
function setup(thread)
  thread:set("walker", count)
  count = count + 1
end
function init(args)
  local prefix = args[1]
  for line in io.lines(args[2]) do n = n + 1; paths[n] = prefix .. line end
  i = math.floor((walker or 0) * n / tonumber(args[3]))
end
function request()
  i = i % n + 1
  return wrk.format("GET", paths[i])
end
"""


class Failed(Exception):
    """A step went wrong: the run reports it and exits 1."""


@dataclass(frozen=True)
class Workload:
    """What wrk asks one server for: one file (`file`), or every path of `paths` in turn
    (written one a line to `list_file`); under `nginx_dir` of nginx's files/ and under the
    distribution `base_path` of Pallet."""

    name: str  # the label of its rows
    nginx_dir: str
    base_path: str
    figure: str  # what the target is about: "rps" or "bytes_per_s"
    target: float
    threads: int
    connections: int
    file: str = ""
    list_file: Path | None = None
    paths: int = 0  # how many entries the list has
    distinct: int = 0  # how many of them are distinct

    def prefix(self, server: str) -> str:
        if server == "nginx":
            return f"/files/{self.nginx_dir}".rstrip("/")
        return f"/pallet/content/{self.base_path}"


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
    return digests


def readable(root: Path) -> None:
    """Everything under `root` readable by nginx's unprivileged worker."""
    for path in [root, *root.rglob("*")]:
        path.chmod(0o755 if path.is_dir() else 0o644)


def distinct_paths(count: int) -> list[str]:
    """The relative paths of the distinct workload: 1,000 files a folder."""
    return [f"{i // 1000:03d}/{i:06d}.bin" for i in range(count)]


def write_list(path: Path, entries: list[str]) -> Path:
    path.write_text("".join(f"{entry}\n" for entry in entries))
    return path


# -- Pallet's side ----------------------------------------------------------------------------

def set_up_pallet(data_dir: Path, db_url: str, root: Path, manifest_url: str, args) -> dict:
    """Migrate, then the distributed repositories the workloads ask for: `bench` holding the
    two files (stored) and `on-demand` synced with the on_demand policy from `manifest_url`
    (nothing stored); `distinct-N` of N files each, also written under root/files/; `dnf`,
    an rpm repository. Returns {"distinct": {N: {path: sha256}}, "dnf": {location: sha256}}
    and the setup's seconds."""
    from pallet.db.migrate import upgrade
    from pallet.runtime import Runtime
    from pallet.settings import Settings

    runtime = Runtime.create(Settings(data_dir=data_dir, database_url=db_url))
    made: dict = {"distinct": {}, "dnf": {}, "seconds": {}}
    try:
        upgrade(runtime.db)
        if "single" in args.workloads:
            stored_repository(runtime, [root / "files" / SMALL, root / "files" / LARGE])
            on_demand_repository(runtime, manifest_url)
        if "distinct" in args.workloads:
            for count in args.paths:
                start = time.perf_counter()
                made["distinct"][count] = distinct_repository(
                    runtime, root / "files" / f"distinct-{count}", count)
                made["seconds"][f"distinct {count:,}"] = time.perf_counter() - start
        if "dnf" in args.workloads:
            start = time.perf_counter()
            made["dnf"] = rpm_repository(runtime, root / "files" / "dnf", args.dnf_packages)
            made["seconds"][f"dnf {args.dnf_packages:,}"] = time.perf_counter() - start
    finally:
        runtime.close()
    return made


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


def store_batch(runtime, folder: Path, files: list[tuple[str, bytes]]) -> dict[str, int]:
    """Write each (relative path, bytes) under `folder` (for nginx) and into the artifact
    store (not durable one by one: one flush for the batch). Returns {sha256: size}."""
    stored = {}
    for relative, data in files:
        sha256 = hashlib.sha256(data).hexdigest()
        target = folder / relative
        try:
            target.write_bytes(data)
        except FileNotFoundError:
            target.parent.mkdir(parents=True)
            target.write_bytes(data)
        stored[sha256] = runtime.storage.put_bytes(data, sha256, durable=False)
    runtime.storage.flush()
    return stored


def distinct_repository(runtime, folder: Path, count: int, batch: int = 10_000) -> dict:
    """A published `file` repository `distinct-<count>` of `count` distinct 4 KiB files,
    recorded in bulk (`content.bulk`), distributed at its name. Returns {path: sha256}."""
    from pallet.content.bulk import NewUnit, record_artifacts, record_units
    from pallet.content.identity import identity_digest
    from pallet.repositories.service import create_repository
    from pallet.repositories.versions import create_version

    print(f"setting up distinct-{count} ...", file=sys.stderr, flush=True)
    name, paths, digests = f"distinct-{count}", distinct_paths(count), {}
    with runtime.db.write() as session:
        ids = []
        for start in range(0, count, batch):
            files = [(path, os.urandom(4 * KiB)) for path in paths[start:start + batch]]
            stored = store_batch(runtime, folder, files)
            made = []
            for path, data in files:
                sha256 = hashlib.sha256(data).hexdigest()
                digests[path] = sha256
                fields = {"relative_path": path, "sha256": sha256}
                made.append(NewUnit("file", identity_digest("file", fields), fields,
                                    ((path, sha256, len(data)),)))
            found = record_units(session, runtime.plugins, made,
                                 record_artifacts(session, stored))
            ids += [found[unit.digest] for unit in made]
        repository = create_repository(session, runtime.plugins, name=name, type="file")
        version = create_version(session, runtime.plugins, repository, add=ids)
        publish_and_distribute(session, runtime, repository, version, name)
    return digests


def rpm_repository(runtime, folder: Path, count: int) -> dict:
    """An `rpm` repository `dnf` of `count` packages whose fields are bench/rpm.py's
    generated ones and whose files are 4 KiB of random bytes (not RPMs), recorded in bulk,
    published by the `publication.create` task (repodata written by createrepo_c) and
    distributed at `dnf`. Returns {location: sha256} of the packages."""
    from pallet.content.bulk import NewUnit, record_artifacts, record_units
    from pallet.content.identity import unit_identity
    from pallet.distributions.service import Target, create_distribution
    from pallet.plugins.rpm import package
    from pallet.repositories.service import create_repository
    from pallet.repositories.versions import create_version
    from pallet.tasks.registry import lookup
    from pallet.tasks.worker import TaskContext
    from rpm import make_package

    print(f"setting up the rpm repository of {count:,} packages ...", file=sys.stderr,
          flush=True)
    files, made = [], []
    for i in range(count):
        data = os.urandom(DNF_FILE_SIZE)
        sha256 = hashlib.sha256(data).hexdigest()
        generated = make_package(i)
        generated.pkgId = sha256
        generated.size_package = len(data)
        fields = package.checked(package.fields_of(generated), "the bench").model_dump(
            mode="json")
        where = package.location(fields["name"], fields["version"], fields["release"],
                                 fields["arch"])
        files.append((where, data))
        made.append(NewUnit(package.TYPE, unit_identity(package.TYPE, package.KEY, fields),
                            fields, ((where, sha256, len(data)),)))
    stored = store_batch(runtime, folder, files)
    with runtime.db.write() as session:
        found = record_units(session, runtime.plugins, made, record_artifacts(session, stored))
        repository = create_repository(session, runtime.plugins, name="dnf", type="rpm")
        create_version(session, runtime.plugins, repository,
                       add=[found[unit.digest] for unit in made])
        session.flush()
        repository_id = repository.id
    task = TaskContext(0)
    lookup("publication.create")(runtime, task, repository_id=repository_id)
    with runtime.db.write() as session:
        create_distribution(session, name="dnf", base_path="dnf",
                            target=Target(publication_id=task.result["publication"]))
    return {where: unit.files[0][1] for (where, _), unit in zip(files, made)}


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


SERVERS = {"content-app": "`pallet content-app` (Granian)",
           "serve": "`pallet serve` (API + workers + content app, uvicorn)"}


@contextmanager
def pallet_server(kind: str, data_dir: Path, db_url: str):
    """`pallet content-app` or `pallet serve` as its own process on a free port; yields
    (origin, pid). Stopped by its pid."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("PALLET_")}
    env.update(PALLET_DATA_DIR=str(data_dir), PALLET_DATABASE_URL=db_url,
               PALLET_LOG_LEVEL="warning", PALLET_HOST="127.0.0.1", PALLET_PORT=str(port),
               PALLET_ADMIN_PASSWORD=PASSWORD)
    pallet = Path(sys.executable).with_name("pallet")
    log = open(data_dir / f"{kind}.log", "wb")
    process = subprocess.Popen([str(pallet) if pallet.exists() else "pallet", kind],
                               env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        try:
            wait_for_port(port, timeout=60)
        except SystemExit as exc:
            raise Failed(f"{exc}; the {kind} log:\n{read_log(data_dir, kind)}") from None
        yield f"http://127.0.0.1:{port}", process.pid
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()


def read_log(data_dir: Path, kind: str) -> str:
    return (data_dir / f"{kind}.log").read_text(errors="replace")[-4000:]


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


def process_count(pid: int) -> int:
    """The process and its descendants."""
    return 1 + sum(process_count(int(child)) for task in Path(f"/proc/{pid}/task").iterdir()
                   for child in (task / "children").read_text().split())


# -- measuring --------------------------------------------------------------------------------

def fetch(url: str) -> bytes:
    try:
        with urllib.request.urlopen(url, timeout=60) as response:
            return response.read()
    except OSError as exc:
        raise Failed(f"GET {url}: {exc}") from None


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


def wrk(url: str, threads: int, connections: int, seconds: int,
        script: list[str] | None = None) -> dict:
    command = ["wrk", f"-t{threads}", f"-c{connections}", f"-d{seconds}s", "--latency"]
    if script:
        command += ["-s", script[0], url, "--", *script[1:]]
    else:
        command.append(url)
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

    transfer = find(r"^Transfer/sec:\s+([\d.]+)(\w+)")
    requests = int(find(r"^\s+(\d+) requests in").group(1))
    if requests == 0:
        raise Failed(f"{command} completed no request:\n{output}")
    errors = re.search(r"Socket errors: (.*)$", output, re.MULTILINE)
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    return {"rps": float(find(r"^Requests/sec:\s+([\d.]+)").group(1)),
            "bytes_per_s": float(transfer.group(1)) * SIZES[transfer.group(2)],
            "p50": latency(find(r"^\s+50%\s+([\d.]+)(\w+)")),
            "p99": latency(find(r"^\s+99%\s+([\d.]+)(\w+)")),
            "requests": requests, "non_2xx": int(non_2xx.group(1)) if non_2xx else 0,
            "errors": errors.group(1) if errors else ""}


def latency(match: re.Match) -> float:
    return float(match.group(1)) * UNITS[match.group(2)]


def run_wrk(workload: Workload, server: str, origin: str, seconds: int, script: Path) -> dict:
    prefix = workload.prefix(server)
    if workload.file:
        return wrk(f"{origin}{prefix}/{workload.file}", workload.threads,
                   workload.connections, seconds)
    return wrk(f"{origin}/", workload.threads, workload.connections, seconds,
               [str(script), f"{prefix}/", str(workload.list_file), str(workload.threads)])


def load(workloads: list[Workload], servers: dict[str, tuple[str, int]], args,
         script: Path) -> dict:
    """wrk against each server for each workload, warm-up first; the servers alternate,
    round after round, so load from elsewhere on the machine falls on all alike. After each
    workload's last round, each Pallet server's memory.
    Returns {(workload, server): [figures of each round]} and {(workload, server): (RSS, HWM,
    processes)}."""
    results: dict = {}
    memory: dict = {}
    for round in range(1, args.rounds + 1):
        for workload in workloads:
            for server, (origin, _) in servers.items():
                print(f"round {round}: wrk -t{workload.threads} -c{workload.connections} "
                      f"{server} {workload.name} ...", file=sys.stderr, flush=True)
                run_wrk(workload, server, origin, WARM_UP, script)
                results.setdefault((workload.name, server), []).append(
                    run_wrk(workload, server, origin, args.duration, script))
                if round == args.rounds and server != "nginx":
                    pid = servers[server][1]
                    memory[(workload.name, server)] = (
                        memory_of(pid, "VmRSS"), memory_of(pid, "VmHWM"), process_count(pid))
    return {"wrk": results, "memory": memory}


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


def repodata(pallet_origin: str, folder: Path) -> list[str]:
    """The dnf publication's repomd.xml and the files it names, fetched from Pallet and
    written under `folder` for nginx. Returns their relative paths, repomd.xml first, then
    primary, filelists and other, then any others."""
    base = f"{pallet_origin}/pallet/content/dnf"
    repomd = fetch(f"{base}/repodata/repomd.xml")
    named = re.findall(rb'<data type="([^"]+)">.*?<location href="([^"]+)"', repomd, re.S)
    order = {b"primary": 0, b"filelists": 1, b"other": 2}
    hrefs = [href.decode() for kind, href in sorted(named, key=lambda n: order.get(n[0], 3))]
    (folder / "repodata").mkdir(parents=True, exist_ok=True)
    (folder / "repodata" / "repomd.xml").write_bytes(repomd)
    for href in hrefs:
        (folder / href).write_bytes(fetch(f"{base}/{href}"))
    return ["repodata/repomd.xml", *hrefs]


def dnf_list(metadata: list[str], packages: list[str], per_client: int) -> list[str]:
    """What a fleet of dnf clients asks for, one client after the other: the metadata
    (repomd.xml, primary, filelists, other), then `per_client` packages, the next client the
    next packages, until every package was asked for once."""
    entries = []
    for start in range(0, len(packages), per_client):
        entries += metadata + packages[start:start + per_client]
    return entries


def workloads_of(args, root: Path, made: dict, metadata: list[str]) -> list[Workload]:
    threads, connections = args.walk_threads, args.small_connections
    workloads = []
    if "single" in args.workloads:
        workloads += [
            Workload(size_label(args.small_size), "", "bench", "rps", TARGETS[SMALL], 1,
                     args.small_connections, file=SMALL),
            Workload(size_label(args.large_size), "", "bench", "bytes_per_s", TARGETS[LARGE],
                     2, args.large_connections, file=LARGE)]
    for count, digests in made["distinct"].items():
        listed = write_list(root / f"distinct-{count}.paths", list(digests))
        workloads.append(Workload(f"distinct {count:,}", f"distinct-{count}",
                                  f"distinct-{count}", "rps", LIST_TARGET, threads,
                                  connections, list_file=listed, paths=count, distinct=count))
    if made["dnf"]:
        entries = dnf_list(metadata, list(made["dnf"]), args.dnf_per_client)
        listed = write_list(root / "dnf.paths", entries)
        workloads.append(Workload(f"dnf {len(made['dnf']):,}", "dnf", "dnf", "rps",
                                  LIST_TARGET, threads, connections, list_file=listed,
                                  paths=len(entries), distinct=len(made["dnf"]) + len(metadata)))
    return workloads


def check_servers(servers: dict, workloads: list[Workload], digests: dict, made: dict,
                  root: Path) -> None:
    """One GET of a few files of each workload from each server, checked against their
    sha256 (the first, middle and last of a path list; all the dnf metadata)."""
    wanted = {}
    if SMALL in digests and any(w.file for w in workloads):
        wanted["bench"] = ("", {SMALL: digests[SMALL], LARGE: digests[LARGE]})
    for count, paths in made["distinct"].items():
        listed = list(paths)
        sample = {p: paths[p] for p in (listed[0], listed[count // 2], listed[-1])}
        wanted[f"distinct-{count}"] = (f"distinct-{count}", sample)
    if made["dnf"]:
        listed = list(made["dnf"])
        sample = {p: made["dnf"][p] for p in (listed[0], listed[-1])}
        for path in (root / "files" / "dnf" / "repodata").iterdir():
            relative = f"repodata/{path.name}"
            sample[relative] = hashlib.sha256(path.read_bytes()).hexdigest()
        wanted["dnf"] = ("dnf", sample)
    for server, (origin, _) in servers.items():
        for base_path, (nginx_dir, files) in wanted.items():
            prefix = (f"/files/{nginx_dir}".rstrip("/") if server == "nginx"
                      else f"/pallet/content/{base_path}")
            for relative, sha256 in files.items():
                check_bytes(f"{origin}{prefix}/{relative}", sha256)


def measure(args) -> dict:
    ensure_commands({"wrk": "wrk", "nginx": "nginx", "curl": "curl"})
    root = Path(tempfile.mkdtemp(prefix="pallet-bench-serve-"))
    try:
        digests = make_files(root, args.small_size, args.large_size)
        readable(root)  # the on-demand sync reads the manifest through nginx
        script = root / "walk.lua"
        script.write_text(WALK_LUA)
        with database(args.database, args.postgres_url) as (db_url, data_dir), \
                nginx(root, workers=args.nginx_workers) as nginx_url, ExitStack() as stack:
            print("setting up Pallet ...", file=sys.stderr, flush=True)
            made = set_up_pallet(data_dir, db_url, root, f"{nginx_url}/remote/PULP_MANIFEST",
                                 args)
            servers = {"nginx": (nginx_url, 0)}
            for kind in SERVERS:
                servers[kind] = stack.enter_context(pallet_server(kind, data_dir, db_url))
            metadata = (repodata(servers["content-app"][0], root / "files" / "dnf")
                        if made["dnf"] else [])
            readable(root)  # what the setup wrote since
            workloads = workloads_of(args, root, made, metadata)
            check_servers(servers, workloads, digests, made, root)
            started = {kind: memory_of(servers[kind][1], "VmRSS") for kind in SERVERS}
            results = load(workloads, servers, args, script)
            results.update(started_mb=started, setup=made["seconds"], workloads=workloads,
                           metadata=metadata)
            if "single" in args.workloads:
                results["ttfb"] = on_demand(f"{servers['content-app'][0]}/pallet/content",
                                            nginx_url, data_dir, digests)
            results["peak_mb"] = {kind: memory_of(servers[kind][1], "VmHWM")
                                  for kind in SERVERS}
            results["logs"] = {kind: read_log(data_dir, kind) for kind in SERVERS}
        return results
    finally:
        shutil.rmtree(root, ignore_errors=True)


# -- the report -------------------------------------------------------------------------------

def report(results: dict, args) -> bool:
    """Print the figures; False if a server gave an answer other than 2xx/3xx."""
    print(f"\nServing on 127.0.0.1: {', '.join(SERVERS.values())}, each one process "
          f"started against the same data directory and database ({args.database}), beside "
          f"nginx ({args.nginx_workers} worker{'s' * (args.nginx_workers != 1)}, sendfile);"
          f"\nwrk for {args.duration} s per run after a {WARM_UP} s warm-up, {args.rounds} "
          f"round(s); each row is the server's median run. The machine's cores are shared "
          f"by wrk, nginx and both Pallet servers (and whatever else runs there).\n")
    if results["setup"]:
        print("Setup (not timed in the figures): " + ", ".join(
            f"{name} {seconds:.1f} s" for name, seconds in results["setup"].items()) + "\n")
    print(f"{'workload':<17}{'wrk':<9}{'server':<13}{'req/s':>9}{'MiB/s':>8}{'p50':>10}"
          f"{'p99':>10}{'x nginx':>8}  {'target':<13}{'RSS':>6}{'HWM':>6}  "
          f"{'each round':<16}{'cycles':>7}  errors")
    clean = True
    for workload in results["workloads"]:
        label, options = workload.name, f"-t{workload.threads} -c{workload.connections}"
        figure = workload.figure
        rounds = {server: results["wrk"][(workload.name, server)]
                  for server in ("nginx", *SERVERS)}
        medians = {server: median(figures, figure) for server, figures in rounds.items()}
        for server, f in medians.items():
            ratio = target = each = rss = hwm = cycles = ""
            if server != "nginx":
                share = f[figure] / medians["nginx"][figure]
                ratio = f"{share:.2f}x"
                target = (f">= {workload.target:g} "
                          f"{'met' if share >= workload.target else 'MISSED'}")
                each = " ".join(f"{p[figure] / n[figure]:.2f}"
                                for p, n in zip(rounds[server], rounds["nginx"]))
                rss_mb, hwm_mb, _ = results["memory"][(workload.name, server)]
                rss, hwm = f"{rss_mb:.0f}", f"{hwm_mb:.0f}"
            if workload.paths:
                cycles = f"{f['requests'] / workload.paths:.2f}"
            non_2xx = sum(run["non_2xx"] for run in rounds[server])
            errors = f["errors"] + (f" NON-2xx: {non_2xx} in all rounds" if non_2xx else "")
            clean &= not non_2xx
            print(f"{label:<17}{options:<9}{server:<13}{f['rps']:>9,.0f}"
                  f"{f['bytes_per_s'] / MiB:>8,.1f}{milliseconds(f['p50']):>10}"
                  f"{milliseconds(f['p99']):>10}{ratio:>8}  {target:<13}{rss:>6}{hwm:>6}  "
                  f"{each:<16}{cycles:>7}  {errors}")
            label, options = "", ""
    print("\nx nginx: the ratio of the median runs' requests/s (the 25 MiB file: throughput); "
          "each round: the ratio\nof the runs made one after the other in that round. RSS, "
          "HWM: the server's VmRSS after the workload's\nlast round and its VmHWM then (the "
          "peak since it started, so it covers the workloads before too), MB,\nits processes "
          "together. cycles: the median run's requests / the entries of its path list (>= 1: "
          "every\npath was asked for).")
    for workload in results["workloads"]:
        if workload.name.startswith("dnf"):
            kinds = [re.sub(r"^repodata/([0-9a-f]{64}-)?", "", path)
                     for path in results["metadata"]]
            print(f"dnf: each client asks for {', '.join(kinds)}, then "
                  f"{args.dnf_per_client} packages; {workload.paths:,} entries, "
                  f"{workload.distinct:,} distinct paths.")
    print("Pallet RSS after start: " + ", ".join(
        f"{kind} {mb:.0f} MB ({process_count_label(results, kind)})"
        for kind, mb in results["started_mb"].items()) + "; peak (VmHWM at the end): " +
        ", ".join(f"{kind} {mb:.0f} MB" for kind, mb in results["peak_mb"].items()) + ".")
    for kind, log in results["logs"].items():
        lines = [line for line in log.splitlines() if line.strip()]
        if lines:
            print(f"\n{kind}'s log ({len(lines)} lines), its end:\n  " +
                  "\n  ".join(lines[-12:]))
    if "ttfb" in results:
        report_on_demand(results, args)
    return clean


def process_count_label(results: dict, kind: str) -> str:
    counts = {count for (_, server), (_, _, count) in results["memory"].items()
              if server == kind}
    return "/".join(str(c) for c in sorted(counts)) + " process(es)" if counts else "?"


def report_on_demand(results: dict, args) -> None:
    print(f"\nOn-demand file of {size_label(args.large_size)} through `pallet content-app`, "
          f"remote: nginx on 127.0.0.1\n")
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


def comma_list(kind, allowed=None):
    def parse(text: str):
        values = [kind(value) for value in text.split(",") if value]
        if allowed and not set(values) <= set(allowed):
            raise argparse.ArgumentTypeError(f"choose among {', '.join(allowed)}")
        return values
    return parse


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workloads", type=comma_list(str, WORKLOADS), default=list(WORKLOADS),
                        help="comma-separated: single (4 KiB and 25 MiB files, on-demand "
                             "first byte), distinct, dnf")
    parser.add_argument("--paths", type=comma_list(int), default=[10_000, 100_000],
                        help="distinct workload: files in each repository, comma-separated")
    parser.add_argument("--dnf-packages", type=int, default=10_000)
    parser.add_argument("--dnf-per-client", type=int, default=100,
                        help="dnf workload: packages each client asks for after the metadata")
    parser.add_argument("--duration", type=int, default=10, help="seconds per wrk run")
    parser.add_argument("--small-connections", type=int, default=32,
                        help="wrk connections for the 4 KiB file, distinct paths and dnf")
    parser.add_argument("--large-connections", type=int, default=8)
    parser.add_argument("--walk-threads", type=int, default=2,
                        help="wrk threads of the distinct and dnf workloads, each walking "
                             "the path list from its own offset")
    parser.add_argument("--nginx-workers", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=3,
                        help="wrk runs per server and workload; the median is reported")
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
    if not report(results, args):
        print("serve: a server gave answers other than 2xx or 3xx", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
