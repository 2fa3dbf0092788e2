"""Benchmark: export and import of exact repository versions, beside tar in the same run.

    python bench/transfer.py [--small N] [--large N] [--database sqlite|postgresql|both]
                             [--repeat N]

Two workloads: 10,000 files of 4 KiB in 100 folders, and 40 files of 25 MiB. For each, a
source Pallet holds them as version 1 of a `file` repository, and version 2 with 1% of the
units removed and 1% new ones. Each step runs in a fresh child process (its memory is its
own), with the page cache warm for both sides:
  export        -- the `transfer.export` task, full, of version 1, to one file;
                   baseline `tar -cf` of the same files;
  import        -- the `transfer.import` task into a fresh Pallet (database + store);
                   baselines `tar -xf` then `sha256sum` of every file (and `openssl sha256`,
                   the faster hash this machine has);
  incremental   -- the export of version 1 -> 2, and its import onto the imported version 1.
Every timed step, baselines included, runs --repeat times (3) and the fastest run counts.
The runs go in rounds, each one run of every step, baselines and Pallets in turn, so that
all sides meet the disk's same moods; nothing is deleted until a workload's runs are done,
and every step starts after a `sync`.
Disk: the file system's free space is sampled every 10 ms during each step; "extra disk" is
the largest drop beyond what the step must write (its archive, or the artifacts it stores).
Not a test: it prints figures. Exits 1 if an imported digest differs from the exported one.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from harness import (database, database_kinds, memory_mb, reset_peak, timed,
                     workload_options, workloads)

MiB = 1 << 20
# Issue 15: each against its floor measured in the same run (`tar -cf` + fsync for export;
# raw-SQL rows + bare-loop durable files for import).
TARGETS = {"export": 2, "import": 2}


class DiskSampler:
    """The lowest free space of a file system while a block runs (a thread samples it)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __enter__(self) -> "DiskSampler":
        self.before = self.lowest = shutil.disk_usage(self.path).free
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def _sample(self) -> None:
        while not self._stop.wait(0.01):
            self.lowest = min(self.lowest, shutil.disk_usage(self.path).free)

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self.lowest = min(self.lowest, shutil.disk_usage(self.path).free)
        self.after = shutil.disk_usage(self.path).free

    def peak_used(self) -> int:
        return self.before - self.lowest


# -- the children -----------------------------------------------------------------------------

def _runtime(args):
    from pallet.db.migrate import upgrade
    from pallet.runtime import Runtime
    from pallet.settings import Settings

    work = Path(args.work)
    runtime = Runtime.create(Settings(data_dir=args.child_dir, database_url=args.child_db,
                                      allowed_export_dirs=[work], allowed_import_dirs=[work],
                                      import_reserve_bytes=0))
    upgrade(runtime.db)
    return runtime


def child_setup(args) -> dict:
    """The source: version 1 holds the files; version 2 removes 1% and adds 1% new ones."""
    from pallet.content.bulk import NewUnit, record_artifacts, record_units
    from pallet.content.identity import identity_digest
    from pallet.repositories.service import create_repository
    from pallet.repositories.versions import create_version
    from pallet.transfer.service import create_exporter

    runtime = _runtime(args)
    files = Path(args.files)
    paths = sorted(p for p in files.rglob("*") if p.is_file())
    extra = sorted(p for p in Path(args.extra).rglob("*") if p.is_file())

    def units(batch, root: Path):
        stored, made = {}, []
        for path in batch:
            sha, size = runtime.storage.put_file(path)
            stored[sha] = size
            relative = str(path.relative_to(root))
            made.append(NewUnit("file", identity_digest("file", {"relative_path": relative,
                                                                 "sha256": sha}),
                                {"relative_path": relative, "sha256": sha},
                                ((relative, sha, size),)))
        return stored, made

    with runtime.db.write() as session:
        repository = create_repository(session, runtime.plugins, name="bench", type="file")
        stored, made = units(paths, files)
        ids = record_units(session, runtime.plugins, made, record_artifacts(session, stored))
        first = [ids[u.digest] for u in made]
        create_version(session, runtime.plugins, repository, add=first)
        stored, added = units(extra, Path(args.extra))
        more = record_units(session, runtime.plugins, added, record_artifacts(session, stored))
        change = max(1, len(first) // 100)
        create_version(session, runtime.plugins, repository,
                       add=[more[u.digest] for u in added], remove=first[:change])
        create_exporter(session, runtime.settings, name="bench", path=args.work,
                        repositories=["bench"])
    runtime.close()
    return {}


def child_export(args) -> dict:
    from pallet.repositories.models import RepositoryVersion
    from pallet.tasks.worker import TaskContext
    from pallet.transfer import tasks
    from sqlalchemy import select

    runtime = _runtime(args)
    with runtime.db.read() as session:
        numbers = list(session.scalars(select(RepositoryVersion.number)
                                       .order_by(RepositoryVersion.number)))
    task = TaskContext(0)
    # Explicit versions: a repeated run exports the same change (since-the-last-export would
    # find nothing new the second time).
    options = ({"versions": {"bench": numbers[-1]}, "start_versions": {"bench": numbers[-2]}}
               if args.incremental else {"versions": {"bench": numbers[-2]}})
    reset_peak()
    with DiskSampler(Path(args.work)) as disk:
        _, seconds = timed(tasks.export, runtime, task, exporter_id=1, single_file=True,
                           **options)
    result = task.result
    runtime.close()
    toc = json.loads(Path(result["toc"]).read_text())
    return {"seconds": seconds, "peak_mb": memory_mb("VmHWM"), "bytes": result["bytes"],
            "extra": disk.peak_used() - result["bytes"], "toc": result["toc"],
            "digest": toc["summary"]["repositories"][0]["digest"]}


def child_import(args) -> dict:
    from pallet.tasks.worker import TaskContext
    from pallet.transfer import service, tasks

    runtime = _runtime(args)
    with runtime.db.write() as session:
        if not service.list_importers(session)[0]:
            service.create_importer(session, name="bench", create_repositories=True)
    task = TaskContext(0)
    reset_peak()
    with DiskSampler(Path(args.child_dir)) as disk:
        _, seconds = timed(tasks.import_archive, runtime, task, importer_id=1, path=args.toc)
    plan = task.result
    runtime.close()
    return {"seconds": seconds, "peak_mb": memory_mb("VmHWM"),
            "written": plan["bytes_to_write"], "extra": disk.peak_used() - plan["bytes_to_write"],
            "digest": plan["repositories"][0]["target_digest"]}


def child_floor(args) -> dict:
    """The floor under an import of `args.files`, in a fresh migrated database and folder:
    the rows an import writes (artifact, content, content_artifact, repository_content, the
    version's row) inserted by the driver's executemany from tuples made beforehand, in one
    transaction; then the same files created by a bare loop in the store's layout
    (`<sha[:2]>/<sha>`), made durable by one syncfs as the store's `flush` does. What is
    timed is only the writing: the tuples and the files' bytes are ready before."""
    import hashlib
    from pallet.content.identity import identity_digest
    from pallet.db.base import utcnow
    from pallet.repositories.service import create_repository

    runtime = _runtime(args)
    files = Path(args.files)
    blobs = []
    for path in sorted(p for p in files.rglob("*") if p.is_file()):
        data = path.read_bytes()
        blobs.append((str(path.relative_to(files)), hashlib.sha256(data).hexdigest(), data))
    with runtime.db.write() as session:  # the repository exists before, as in an import
        repository_id = create_repository(session, runtime.plugins, name="floor",
                                          type="file").id
    now = utcnow().isoformat(" ") if runtime.db.is_sqlite else utcnow()
    artifacts, content, links, members = [], [], [], []
    for number, (relative, sha, data) in enumerate(blobs, start=1):
        fields = {"relative_path": relative, "sha256": sha}
        artifacts.append((number, sha, len(data), now))
        content.append((number, "file", identity_digest("file", fields), json.dumps(fields),
                        now))
        links.append((number, relative, sha, len(data), number))
        members.append((repository_id, number, 1, identity_digest("file", {"relative_path":
                                                                           relative})))
    mark = "?" if runtime.db.is_sqlite else "%s"
    statements = [
        ("artifact (id, sha256, size, created_at)", artifacts),
        ("content (id, type, digest, data, created_at)", content),
        ("content_artifact (content_id, relative_path, sha256, size, artifact_id)", links),
        ("repository_content (repository_id, content_id, version_added, repository_key)",
         members),
        ("repository_version (repository_id, number, counts, lthash, digest, created_at)",
         [(repository_id, 1, json.dumps({"file": {"added": len(blobs), "removed": 0,
                                                  "present": len(blobs)}}),
           bytes(2048), "0" * 64, now)])]
    connection = runtime.db.engine.raw_connection()
    try:
        start = time.perf_counter()
        cursor = connection.cursor()
        if runtime.db.is_sqlite:  # Pallet's connections leave BEGIN to the caller
            cursor.execute("BEGIN IMMEDIATE")
        for target, rows in statements:
            columns = target[target.index("(") + 1:-1].count(",") + 1
            cursor.executemany(f"INSERT INTO {target} VALUES "
                               f"({', '.join([mark] * columns)})", rows)
        connection.commit()
        rows_seconds = time.perf_counter() - start
    finally:
        connection.close()
    runtime.close()
    store = Path(args.child_dir) / "floor-store"
    folders = sorted({sha[:2] for _, sha, _ in blobs})
    start = time.perf_counter()
    for folder in folders:
        os.makedirs(f"{store}/{folder}")
    for _, sha, data in blobs:
        fd = os.open(f"{store}/{sha[:2]}/{sha}", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        os.write(fd, data)
        os.close(fd)
    fd = os.open(store, os.O_RDONLY)
    try:
        syncfs(fd)
    finally:
        os.close(fd)
    return {"rows": rows_seconds, "files": time.perf_counter() - start}


def syncfs(fd: int) -> None:
    """syncfs(2) of the file system holding `fd`, as the artifact store flushes."""
    import ctypes

    if ctypes.CDLL(None, use_errno=True).syncfs(fd) != 0:
        os.sync()


CHILDREN = {"setup": child_setup, "export": child_export, "import": child_import,
            "floor": child_floor}


def run_child(kind: str, args, **options) -> dict:
    command = [sys.executable, __file__, "--child", kind]
    for key, value in options.items():
        if value is True:
            command.append(f"--{key.replace('_', '-')}")
        elif value not in (None, False):
            command += [f"--{key.replace('_', '-')}", str(value)]
    done = subprocess.run(command, stdout=subprocess.PIPE, text=True)
    if done.returncode:
        raise SystemExit(f"the {kind} child failed with exit code {done.returncode}")
    return json.loads(done.stdout.splitlines()[-1])


# -- the parent -------------------------------------------------------------------------------

def make_tree(root: Path, count: int, size: int, folders: int, prefix: str = "file") -> None:
    for i in range(count):
        relative = (f"folder-{i % folders:03d}/{prefix}-{i:06d}.bin" if folders > 1
                    else f"{prefix}-{i:04d}.bin")
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(os.urandom(size))


def shell(command: str, cwd: Path | None = None) -> float:
    start = time.perf_counter()
    subprocess.run(command, shell=True, check=True, cwd=cwd, stdout=subprocess.DEVNULL)
    return time.perf_counter() - start


def settle() -> None:
    """Write back what is pending before a timed step. Right after many files are deleted,
    creating files is several times slower on this file system, for minutes: no step may
    pay for another's deletions (nothing is deleted until a workload's runs are done)."""
    subprocess.run("sync", check=True)


def best(runs: list[dict]) -> dict:
    """The fastest of repeated runs: the least disturbed by the rest of the machine."""
    return min(runs, key=lambda run: run["seconds"])


@dataclass
class Side:
    """One database's Pallets: the source, and the destinations imports go to."""

    kind: str
    db: str
    dir: Path
    runs: dict[str, list[dict]] = field(default_factory=dict)
    destinations: list[tuple[str, Path]] = field(default_factory=list)

    def run(self, step: str, figures: dict) -> None:
        self.runs.setdefault(step, []).append(figures)


def measure(args) -> dict:
    """Per workload, `args.repeat` rounds, each one run of every step in turn: the
    baselines, then each database's export, then the extractions, then each database's
    import. Interleaved so, as this disk's speed drifts from minute to minute, every side
    meets the same disk; the fastest run of each step counts."""
    kinds = database_kinds(args)
    results: dict = {}
    for name, (count, size, folders) in workloads(args).items():
        root = Path(tempfile.mkdtemp(prefix="pallet-bench-transfer-"))
        try:
            with contextlib.ExitStack() as stack:  # every Pallet's data, until the end
                print(f"{name}: writing the files ...", file=sys.stderr, flush=True)
                make_tree(root / "files", count, size, folders)
                make_tree(root / "extra", max(1, count // 100), size, folders, prefix="new")
                work = root / "work"
                work.mkdir()
                sides = [set_up(args, kind, root, work, stack) for kind in kinds]
                baseline_runs: dict[str, list[float]] = {}
                for attempt in range(args.repeat):
                    print(f"{name}: round {attempt + 1} of {args.repeat} ...",
                          file=sys.stderr, flush=True)
                    run_round(args, root / "files", work, attempt, baseline_runs, sides,
                              stack)
                for side in sides:  # the incremental, exported and applied to each import
                    run_incremental(args, side, work)
                results[(name, "baseline")] = {step: min(seconds) for step, seconds
                                               in baseline_runs.items()}
                results[(name, "baseline")]["bytes"] = (work / "baseline-0.tar").stat().st_size
                for side in sides:
                    results[(name, side.kind)] = summary(side)
        finally:
            shutil.rmtree(root, ignore_errors=True)
            settle()
    return results


def set_up(args, kind: str, root: Path, work: Path, stack: contextlib.ExitStack) -> Side:
    # Pallet's stores beside the baselines' extractions, in one folder: on this machine
    # creating files is up to 8x slower in some folders than in others (by where the file
    # system places them), and no side may gain from its folder.
    print(f"setting up pallet on {kind} ...", file=sys.stderr, flush=True)
    side = Side(kind, *stack.enter_context(database(kind, args.postgres_url, work)))
    run_child("setup", args, child_db=side.db, child_dir=side.dir, files=root / "files",
              extra=root / "extra", work=work, postgres_url=args.postgres_url)
    return side


def run_round(args, files: Path, work: Path, attempt: int, baseline_runs: dict,
              sides: list[Side], stack: contextlib.ExitStack) -> None:
    """One run of every step: tar -cf, each export, tar -xf with each hash, each import
    (into a fresh Pallet, kept for the incremental)."""
    def baseline(step: str, seconds: float) -> None:
        baseline_runs.setdefault(step, []).append(seconds)

    common = {"work": work, "postgres_url": args.postgres_url}
    copy = work / f"baseline-{attempt}.tar"
    settle()
    baseline("tar -cf", shell(f"tar -cf {copy} -C {files} ."))
    settle()  # the same, made durable as Pallet's export is (tar leaves it cached)
    durable = work / f"baseline-fsync-{attempt}.tar"
    baseline("tar -cf + fsync", shell(f"tar -cf {durable} -C {files} . && sync {durable}"))
    for side in sides:
        settle()
        side.run("export", run_child("export", args, child_db=side.db, child_dir=side.dir,
                                     **common))
    for name, hasher in (("sha256sum", "sha256sum"), ("openssl", "openssl dgst -sha256")):
        target = work / f"extract-{name}-{attempt}"
        target.mkdir()
        settle()
        untar = shell(f"tar -xf {copy} -C {target}")
        digest = shell(f"find . -type f -print0 | xargs -0 {hasher} > /dev/null", cwd=target)
        baseline(f"tar -xf + {name}", untar + digest)
        if name == "openssl":  # and durable, as Pallet's import is
            baseline("tar -xf + openssl + sync", untar + digest + shell(f"sync -f {target}"))
    for side in sides:
        destination = stack.enter_context(database(side.kind, args.postgres_url, work))
        side.destinations.append(destination)
        settle()
        side.run("import", run_child("import", args, child_db=destination[0],
                                     child_dir=destination[1],
                                     toc=side.runs["export"][0]["toc"], **common))
        floor = stack.enter_context(database(side.kind, args.postgres_url, work))
        settle()
        figures = run_child("floor", args, child_db=floor[0], child_dir=floor[1],
                            files=files, **common)
        side.run("floor", figures | {"seconds": figures["rows"] + figures["files"]})


def run_incremental(args, side: Side, work: Path) -> None:
    """The export of version 1 -> 2, `args.repeat` times, and the fastest one's import onto
    each destination (which holds the imported version 1)."""
    common = {"work": work, "postgres_url": args.postgres_url}
    for _ in range(args.repeat):
        settle()
        side.run("delta_export", run_child("export", args, child_db=side.db,
                                           child_dir=side.dir, incremental=True, **common))
    delta = best(side.runs["delta_export"])
    for dst_db, dst_dir in side.destinations:
        settle()
        side.run("delta_import", run_child("import", args, child_db=dst_db,
                                           child_dir=dst_dir, toc=delta["toc"], **common))


def summary(side: Side) -> dict:
    runs = side.runs
    full, delta = runs["export"][0], best(runs["delta_export"])
    return {"export": best(runs["export"]), "import": best(runs["import"]),
            "floor": {part: min(run[part] for run in runs["floor"])
                      for part in ("rows", "files")},
            "delta_export": delta, "delta_import": best(runs["delta_import"]),
            "digests_ok": all(run["digest"] == full["digest"] for run in runs["import"])
            and all(run["digest"] == delta["digest"] for run in runs["delta_import"])}


def report(results: dict, args) -> bool:
    ok = True
    labels = {"small": f"{args.small:,} x {args.small_size // 1024} KiB",
              "large": f"{args.large:,} x {args.large_size // MiB} MiB"}
    print("\nExport and import, one file per archive, beside tar in the same run "
          f"(fastest of {args.repeat})\n")
    print(f"{'workload':<20}{'step':<34}{'time':>9}{'x base':>9}{'target':>9}{'size':>11}"
          f"{'peak RSS':>10}{'extra disk':>12}")
    for name in [n for n in ("small", "large") if (n, "baseline") in results]:
        base = results[(name, "baseline")]
        label = labels[name]

        def line(step, seconds, ratio="", target="", size="", rss="", extra=""):
            nonlocal label
            print(f"{label:<20}{step:<34}{seconds:>8.2f}s{ratio:>9}{target:>9}{size:>11}"
                  f"{rss:>10}{extra:>12}")
            label = ""

        line("tar -cf", base["tar -cf"], size=f"{base['bytes'] / MiB:.1f}MB")
        line("tar -cf + fsync", base["tar -cf + fsync"])
        line("tar -xf + sha256sum", base["tar -xf + sha256sum"])
        line("tar -xf + openssl sha256", base["tar -xf + openssl"])
        line("tar -xf + openssl + sync", base["tar -xf + openssl + sync"])
        for kind in [k for (n, k) in results if n == name and k != "baseline"]:
            figures = results[(name, kind)]
            exp, imp = figures["export"], figures["import"]
            dexp, dimp = figures["delta_export"], figures["delta_import"]
            for baseline in ("tar -cf", "tar -cf + fsync"):
                ratio = exp["seconds"] / base[baseline]
                line(f"{kind}: export (vs {baseline[4:]})", exp["seconds"], f"{ratio:.2f}x",
                     f"<= {TARGETS['export']:g}" if baseline == "tar -cf + fsync" else "",
                     f"{exp['bytes'] / MiB:.1f}MB", f"{exp['peak_mb']:.0f}MB",
                     f"{max(0, exp['extra']) / MiB:.1f}MB")
            floor = figures["floor"]
            line(f"{kind}: floor: rows by raw SQL", floor["rows"])
            line(f"{kind}: floor: files + syncfs", floor["files"])
            floor_seconds = floor["rows"] + floor["files"]
            line(f"{kind}: import floor", floor_seconds)
            line(f"{kind}: import (vs floor)", imp["seconds"],
                 f"{imp['seconds'] / floor_seconds:.2f}x", f"<= {TARGETS['import']:g}",
                 rss=f"{imp['peak_mb']:.0f}MB", extra=f"{max(0, imp['extra']) / MiB:.1f}MB")
            for baseline in ("sha256sum", "openssl", "openssl + sync"):
                ratio = imp["seconds"] / base[f"tar -xf + {baseline}"]
                line(f"{kind}: import (vs {baseline})", imp["seconds"], f"{ratio:.2f}x")
            line(f"{kind}: incremental export (1%)", dexp["seconds"],
                 size=f"{dexp['bytes'] / MiB:.2f}MB", rss=f"{dexp['peak_mb']:.0f}MB",
                 extra=f"{max(0, dexp['extra']) / MiB:.1f}MB")
            line(f"{kind}: incremental import", dimp["seconds"],
                 rss=f"{dimp['peak_mb']:.0f}MB", extra=f"{max(0, dimp['extra']) / MiB:.1f}MB")
            if not figures["digests_ok"]:
                print(f"*** {kind}: an imported version's digest differs from the exported "
                      "one ***")
                ok = False
    print("\nfloors, measured in the same rounds: export's is tar -cf + fsync of the same "
          "files; import's\nis its rows inserted by the driver's executemany from ready "
          "tuples in a fresh database\n(artifact, content, content_artifact, "
          "repository_content, the version) plus the same files\ncreated by a bare loop in "
          "the store's layout and one syncfs.")
    print("\nexport: the transfer.export task, one file; import: the transfer.import task "
          "into a fresh\nPallet, every artifact re-hashed, chunk checksums verified. extra "
          "disk: the largest drop in\nfree space beyond the archive (export) or the stored "
          "artifacts (import); it includes the\ndatabase's growth. Page cache warm for "
          f"every run; each figure the fastest of {args.repeat}.")
    return ok


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    workload_options(parser)
    for hidden in ("--child", "--child-db", "--child-dir", "--work", "--files", "--extra",
                   "--toc"):
        parser.add_argument(hidden, help=argparse.SUPPRESS)
    parser.add_argument("--incremental", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--repeat", type=int, default=3,
                        help="runs of every timed step, the fastest kept (default 3)")
    args = parser.parse_args()
    if args.child:
        print(json.dumps(CHILDREN[args.child](args)))
        return
    sys.exit(0 if report(measure(args), args) else 1)


if __name__ == "__main__":
    main()
