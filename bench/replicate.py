"""Benchmark: replication between two local Pallets, beside export-then-import and beside a
plain download of the same files, in the same run.

    python bench/replicate.py [--small N] [--large N] [--database sqlite|postgresql|both]

Two workloads: 10,000 files of 4 KiB in 100 folders, and 40 files of 25 MiB. An upstream
Pallet (`pallet serve`, its own data directory and database) holds them as an
auto-published `file` repository with a distribution. Then, each from the client's side:
  download      -- every file from nginx with a concurrent aiohttp client, each one hashed
                   and written to disk (the physical baseline); and the same from the
                   upstream's content app;
  replicate     -- a downstream Pallet's `pallet upstream replicate`: request to finished
                   task, every artifact re-hashed and stored, the digest proved;
  export+import -- the air-gap path over the same disk: an export task on the upstream
                   (one file), then an import task on a third, fresh Pallet;
  incremental   -- after 1% of the units are removed and 1% added upstream, a replication
                   again: its time and the bytes that travelled.
Disk: the file system's free space is sampled every 10 ms during each replication; "extra
disk" is the largest drop beyond the artifacts the downstream stores (so: database growth,
and any temporary copy, of which there should be none). Not a test: it prints figures. Exits
1 if a replica's digest differs from the upstream's.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from contextlib import ExitStack, contextmanager
from pathlib import Path

import httpx

from harness import (database, database_kinds, ensure_commands, free_port, nginx,
                     workload_options, workloads)
from serve import memory_of
from sync import plain_download
from transfer import DiskSampler, make_tree, settle

MiB = 1 << 20
PASSWORD = "bench-admin-password"
TIMEOUT = 1800


# -- the upstream's content, written straight into its database and store -------------------

def child_setup(args) -> None:
    """Version 1 of `bench`, published and distributed; with --change, version 2: 1% of
    the units removed and 1% new ones."""
    from sqlalchemy import select

    from pallet.content.bulk import NewUnit, record_artifacts, record_units
    from pallet.content.identity import identity_digest
    from pallet.content.models import Content
    from pallet.db.migrate import upgrade
    from pallet.distributions.service import Target, create_distribution
    from pallet.publications.service import publish
    from pallet.repositories.models import Repository
    from pallet.repositories.service import create_repository
    from pallet.repositories.versions import content_ids_query, create_version
    from pallet.runtime import Runtime
    from pallet.settings import Settings

    runtime = Runtime.create(Settings(data_dir=args.child_dir, database_url=args.child_db))
    upgrade(runtime.db)
    root = Path(args.extra if args.change else args.files)
    made, stored = [], {}
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        sha, size = runtime.storage.put_file(path)
        stored[sha] = size
        relative = str(path.relative_to(root))
        fields = {"relative_path": relative, "sha256": sha}
        made.append(NewUnit("file", identity_digest("file", fields), fields,
                            ((relative, sha, size),)))
    with runtime.db.write() as session:
        ids = record_units(session, runtime.plugins, made, record_artifacts(session, stored))
        if args.change:
            repository = session.scalar(select(Repository).where(Repository.name == "bench"))
            held = list(session.scalars(select(Content.id).where(
                Content.id.in_(content_ids_query(repository, repository.next_version - 1)))
                .order_by(Content.id)))
            version = create_version(session, runtime.plugins, repository,
                                     add=[ids[u.digest] for u in made],
                                     remove=held[:max(1, len(held) // 100)])
            publish(session, runtime.plugins, runtime.storage, repository, version)
        else:
            repository = create_repository(session, runtime.plugins, name="bench", type="file",
                                           autopublish=True, publish_options={})
            version = create_version(session, runtime.plugins, repository,
                                     add=[ids[u.digest] for u in made])
            publish(session, runtime.plugins, runtime.storage, repository, version)
            create_distribution(session, name="bench", base_path="bench",
                                target=Target(repository_id=repository.id))
    runtime.close()


def setup(data_dir: Path, db_url: str, args, *, change: bool = False) -> None:
    command = [sys.executable, __file__, "--child", "--child-dir", str(data_dir),
               "--child-db", db_url, "--files", str(args.files), "--extra", str(args.extra)]
    subprocess.run(command + (["--change"] if change else []), check=True)


# -- servers --------------------------------------------------------------------------------

@contextmanager
def pallet_server(data_dir: Path, db_url: str, **settings: str):
    """`pallet serve` on a free port; yields (API client, base URL, pid). Stopped by pid."""
    port = free_port()
    env = dict(os.environ, PALLET_DATA_DIR=str(data_dir), PALLET_DATABASE_URL=db_url,
               PALLET_PORT=str(port), PALLET_ADMIN_PASSWORD=PASSWORD, PALLET_WORKERS="2",
               PALLET_LOG_LEVEL="warning", PALLET_TASK_POLL_SECONDS="0.1",
               PALLET_IMPORT_RESERVE_BYTES="0", **settings)
    env.pop("PALLET_CONFIG", None)
    log = open(data_dir / "server.log", "ab")
    process = subprocess.Popen([sys.executable, "-m", "pallet.cli.main", "serve"], env=env,
                               stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    client = httpx.Client(base_url=f"{url}/api/v1", auth=("admin", PASSWORD), timeout=120)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{url}/api/v1/status", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"pallet serve did not start:\n"
                                 f"{(data_dir / 'server.log').read_text()[-2000:]}")
            time.sleep(0.1)
        yield client, url, process.pid
    finally:
        client.close()
        process.terminate()
        process.wait(timeout=30)
        log.close()


def run_task(client: httpx.Client, path: str, body: dict | None = None) -> tuple[dict, float]:
    """POST a request that queues a task; wait for it; (the task, seconds from request to
    its end)."""
    started = time.perf_counter()
    answer = client.post(path, json=body)
    if answer.status_code != 202:
        raise SystemExit(f"{path}: {answer.status_code} {answer.text}")
    href = answer.json()["href"].removeprefix("/api/v1")
    deadline = time.monotonic() + TIMEOUT
    while time.monotonic() < deadline:
        task = client.get(href).json()
        if task["state"] in ("completed", "failed", "canceled"):
            if task["state"] != "completed":
                raise SystemExit(f"{path}: task {task['state']}: {task['error']}")
            return task, time.perf_counter() - started
        time.sleep(0.02)
    raise SystemExit(f"{path}: the task did not finish in {TIMEOUT} s")


def digest_of(client: httpx.Client, repository: str = "bench") -> str:
    number = client.get(f"/repositories/{repository}").json()["latest_version"]
    return client.get(f"/repositories/{repository}/versions/{number}").json()["digest"]


# -- the measurements -----------------------------------------------------------------------

def measure_one(kind: str, root: Path, args, keep: ExitStack) -> dict:
    """The steps on one database. Its servers stop at the end; their databases and data
    directories, and the downloads, go with `keep`, once the workload is done (see
    transfer.py: no step may pay for the deletions of another)."""
    work = root / "work"
    work.mkdir(exist_ok=True)
    with ExitStack() as stack:
        # The servers' data directories beside the baseline's downloads (see transfer.py).
        (up_db, up_dir), (down_db, down_dir), (third_db, third_dir) = (
            keep.enter_context(database(kind, args.postgres_url, root)) for _ in range(3))
        setup(up_dir, up_db, args)
        upstream, up_url, up_pid = stack.enter_context(pallet_server(
            up_dir, up_db, PALLET_ALLOWED_EXPORT_DIRS=json.dumps([str(work)])))
        downstream, _, down_pid = stack.enter_context(pallet_server(down_dir, down_db))
        carried, _, _ = stack.enter_context(pallet_server(
            third_dir, third_db, PALLET_ALLOWED_IMPORT_DIRS=json.dumps([str(work)])))
        figures: dict = {}
        for step, manifest in (
                ("download", f"{stack.enter_context(nginx(root))}/PULP_MANIFEST"),
                ("download_pallet", f"{up_url}/pallet/content/bench/PULP_MANIFEST")):
            target = Path(tempfile.mkdtemp(prefix="pallet-bench-download-", dir=root))
            started = time.perf_counter()
            size = asyncio.run(plain_download(manifest, target, 16))
            figures[step] = {"seconds": time.perf_counter() - started, "bytes": size}
            settle()

        made = downstream.post("/upstreams", json={
            "name": "up", "base_url": up_url, "username": "admin", "password": PASSWORD,
            "repositories": ["bench"]})
        if made.status_code != 201:
            raise SystemExit(f"creating the upstream: {made.text}")
        with DiskSampler(down_dir) as disk:
            task, seconds = run_task(downstream, "/upstreams/up/replicate")
        result = task["result"]
        figures["replicate"] = {"seconds": seconds, "received": result["bytes_received"],
                                "written": result["bytes_written"],
                                "extra": disk.peak_used() - result["bytes_written"]}

        upstream.post("/exporters", json={"name": "bench", "path": str(work),
                                          "repositories": ["bench"]})
        exported, export_seconds = run_task(upstream, "/exporters/bench/export",
                                            {"single_file": True})
        carried.post("/importers", json={"name": "bench", "create_repositories": True})
        _, import_seconds = run_task(carried, "/importers/bench/import",
                                     {"path": exported["result"]["toc"]})
        figures["export_import"] = {"seconds": export_seconds + import_seconds,
                                    "export": export_seconds, "import": import_seconds,
                                    "bytes": exported["result"]["bytes"]}

        setup(up_dir, up_db, args, change=True)
        with DiskSampler(down_dir) as disk:
            task, seconds = run_task(downstream, "/upstreams/up/replicate")
        result = task["result"]
        figures["incremental"] = {"seconds": seconds, "received": result["bytes_received"],
                                  "written": result["bytes_written"],
                                  "extra": disk.peak_used() - result["bytes_written"]}
        _, seconds = run_task(downstream, "/upstreams/up/replicate")
        figures["unchanged"] = {"seconds": seconds}
        figures["digests_equal"] = digest_of(downstream) == digest_of(upstream)
        figures["upstream_peak_mb"] = memory_of(up_pid, "VmHWM")
        figures["downstream_peak_mb"] = memory_of(down_pid, "VmHWM")
    return figures


def write_manifest(root: Path, files: Path) -> None:
    """root/PULP_MANIFEST listing the files (as files/...), for nginx serving `root`."""
    lines = []
    for path in sorted(p for p in files.rglob("*") if p.is_file()):
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        lines.append(f"{path.relative_to(root)},{digest},{path.stat().st_size}\n")
    (root / "PULP_MANIFEST").write_text("".join(lines))


def measure(args) -> dict:
    ensure_commands({"nginx": "nginx"})
    kinds = database_kinds(args)
    results: dict = {}
    for name, (count, size, folders) in workloads(args).items():
        root = Path(tempfile.mkdtemp(prefix="pallet-bench-replicate-"))
        root.chmod(0o755)  # nginx's workers run unprivileged
        try:
            with ExitStack() as keep:
                print(f"{name}: writing the files ...", file=sys.stderr, flush=True)
                args.files, args.extra = root / "files", root / "extra"
                make_tree(args.files, count, size, folders)
                make_tree(args.extra, max(1, count // 100), size, folders, prefix="new")
                write_manifest(root, args.files)
                for kind in kinds:
                    settle()
                    print(f"{name}: {kind} ...", file=sys.stderr, flush=True)
                    results[(name, kind)] = measure_one(kind, root, args, keep)
        finally:
            shutil.rmtree(root, ignore_errors=True)
            settle()
    return results


def report(results: dict, args) -> bool:
    labels = {"small": f"{args.small:,} x {args.small_size // 1024} KiB",
              "large": f"{args.large:,} x {args.large_size // MiB} MiB"}
    print("\nReplication between two local Pallets, beside a plain download and beside "
          "export+import\n")
    print(f"{'workload':<20}{'step':<36}{'time':>9}{'x download':>12}{'travelled':>12}"
          f"{'extra disk':>12}")
    ok = True
    for (name, kind), figures in results.items():
        label = labels[name]
        base = figures["download"]["seconds"]

        def line(step, seconds, ratio=True, travelled=None, extra=None):
            nonlocal label
            print(f"{label:<20}{step:<36}{seconds:>8.2f}s"
                  f"{f'{seconds / base:.2f}x' if ratio else '':>12}"
                  f"{'' if travelled is None else f'{travelled / MiB:.2f}MB':>12}"
                  f"{'' if extra is None else f'{max(0, extra) / MiB:.1f}MB':>12}")
            label = ""

        line(f"{kind}: plain download from nginx", base, travelled=figures["download"]["bytes"])
        line(f"{kind}: the same from the upstream's", figures["download_pallet"]["seconds"])
        line("    content app (pallet serve)", figures["download_pallet"]["seconds"],
             ratio=False)
        rep, exim = figures["replicate"], figures["export_import"]
        line(f"{kind}: replicate", rep["seconds"], travelled=rep["received"],
             extra=rep["extra"])
        line(f"{kind}: export + import", exim["seconds"], travelled=exim["bytes"])
        line(f"{kind}:   (export {exim['export']:.2f}s, import {exim['import']:.2f}s)",
             exim["seconds"], ratio=False)
        inc = figures["incremental"]
        line(f"{kind}: incremental replicate (1%)", inc["seconds"], travelled=inc["received"],
             extra=inc["extra"])
        line(f"{kind}: replicate, nothing changed", figures["unchanged"]["seconds"],
             ratio=False)
        print(f"{'':<20}{kind}: server peak RSS: upstream {figures['upstream_peak_mb']:.0f} MB,"
              f" downstream {figures['downstream_peak_mb']:.0f} MB")
        if not figures["digests_equal"]:
            print(f"*** {name} {kind}: the replica's digest differs from the upstream's ***")
            ok = False
    print("\nreplicate: request to finished task on the downstream (the upstream streams "
          "the archive\nfrom its store, the downstream re-hashes and stores every artifact, "
          "one transaction).\nextra disk: the largest drop in free space beyond the stored "
          "artifacts (database growth\nincluded). Page cache warm.")
    return ok


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    workload_options(parser)
    for hidden in ("--child-dir", "--child-db", "--files", "--extra"):
        parser.add_argument(hidden, help=argparse.SUPPRESS)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--change", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child_setup(args)
        return
    sys.exit(0 if report(measure(args), args) else 1)


if __name__ == "__main__":
    main()
