"""Benchmark: an immediate sync from nginx, beside a plain concurrent download of the same files.

    python bench/sync.py [--small N] [--large N] [--database sqlite|postgresql|both]

Two workloads, each served by nginx (from Debian's packages; installed if missing) on
127.0.0.1 with a PULP_MANIFEST: 10,000 files of 4 KiB in 100 folders, and 40 files of 25 MiB.
For each, in fresh child processes (so the memory figures are their own):
  baseline -- aiohttp, the same concurrency, reads the manifest and downloads every file to
              disk while hashing it with sha256, checking each digest;
  pallet   -- a fresh Pallet (database + artifact store) syncs a `file` repository from a remote
              with the immediate policy: the sync task, start to finish, version included.
Not a test: it prints figures. Exits 1 if a sync fails or its version is wrong.
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
from pathlib import Path

from harness import (DEFAULT_POSTGRES_URL, database, database_kinds, download_checked,
                     ensure_commands, memory_mb, nginx, reset_peak, timed, workloads)

MiB = 1 << 20
TARGETS = {"small": 3.0, "large": 1.5}  # at most this many times the baseline's time


# -- the files --------------------------------------------------------------------------------

def make_tree(root: Path, count: int, size: int, folders: int) -> None:
    """`count` files of `size` random bytes and a PULP_MANIFEST listing them."""
    root.mkdir(parents=True)
    root.chmod(0o755)
    lines = []
    for i in range(count):
        relative = (f"folder-{i % folders:03d}/file-{i:06d}.bin" if folders > 1
                    else f"file-{i:04d}.bin")
        path = root / relative
        path.parent.mkdir(mode=0o755, exist_ok=True)
        data = os.urandom(size)
        path.write_bytes(data)
        lines.append(f"{relative},{hashlib.sha256(data).hexdigest()},{size}\n")
    (root / "PULP_MANIFEST").write_text("".join(lines))


# -- the children -----------------------------------------------------------------------------

async def plain_download(manifest_url: str, target: Path, concurrency: int) -> int:
    """Every file of the manifest to `target`, hashed and checked; returns the bytes."""
    import aiohttp

    base = manifest_url.rsplit("/", 1)[0]
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as session:
        async with session.get(manifest_url) as response:
            manifest = await response.text()
        queue: asyncio.Queue = asyncio.Queue()
        for line in manifest.splitlines():
            if line:
                queue.put_nowait(line.split(","))
        total = 0

        async def worker() -> None:
            nonlocal total
            while not queue.empty():
                relative, sha256, _ = queue.get_nowait()
                total += await download_checked(session, f"{base}/{relative}",
                                                target / relative, sha256)

        await asyncio.gather(*(worker() for _ in range(concurrency)))
        return total


def child_baseline(args) -> dict:
    target = Path(tempfile.mkdtemp(prefix="pallet-bench-download-"))
    try:
        reset_peak()
        size, seconds = timed(asyncio.run, plain_download(args.child_url, target,
                                                          args.concurrency))
        return {"seconds": seconds, "bytes": size, "peak_mb": memory_mb("VmHWM")}
    finally:
        shutil.rmtree(target, ignore_errors=True)


def child_pallet(args) -> dict:
    from pallet.db.migrate import upgrade
    from pallet.remotes.models import Remote
    from pallet.repositories.service import create_repository
    from pallet.repositories.versions import latest_version
    from pallet.runtime import Runtime
    from pallet.settings import Settings
    from pallet.tasks.registry import lookup
    from pallet.tasks.worker import TaskContext

    runtime = Runtime.create(Settings(data_dir=args.child_dir, database_url=args.child_db))
    try:
        upgrade(runtime.db)
        with runtime.db.write() as session:
            remote = Remote(name="bench", type="file", url=args.child_url, policy="immediate",
                            download_concurrency=args.concurrency, headers={})
            session.add(remote)
            repository = create_repository(session, runtime.plugins, name="bench", type="file")
            remote_id, repository_id = remote.id, repository.id
        task = TaskContext(0)
        reset_peak()
        _, seconds = timed(lookup("remote.sync"), runtime, task, repository_id=repository_id,
                           remote_id=remote_id, mirror=None)
        peak = memory_mb("VmHWM")
        with runtime.db.read() as session:
            version = latest_version(session, repository)
            units = sum(c["present"] for c in version.counts.values())
        return {"seconds": seconds, "peak_mb": peak, "units": units, "version": version.number}
    finally:
        runtime.close()


CHILDREN = {"baseline": child_baseline, "pallet": child_pallet}


def run_child(kind: str, url: str, args, db_url: str = "", data_dir: Path | None = None) -> dict:
    command = [sys.executable, __file__, "--child", kind, "--child-url", url,
               "--concurrency", str(args.concurrency), "--child-db", db_url,
               "--child-dir", str(data_dir or "")]
    done = subprocess.run(command, stdout=subprocess.PIPE, text=True)
    if done.returncode:
        raise SystemExit(f"the {kind} child failed with exit code {done.returncode}")
    return json.loads(done.stdout.splitlines()[-1])


# -- the parent -------------------------------------------------------------------------------

def measure(args) -> dict:
    ensure_commands({"nginx": "nginx"})
    root = Path(tempfile.mkdtemp(prefix="pallet-bench-files-"))
    root.chmod(0o755)  # nginx's workers run unprivileged
    results: dict = {}
    try:
        print("writing the files ...", file=sys.stderr, flush=True)
        asked = workloads(args)
        for name, (count, size, folders) in asked.items():
            make_tree(root / name, count, size, folders)
        kinds = database_kinds(args)
        with nginx(root) as base_url:
            for name in asked:
                url = f"{base_url}/{name}/PULP_MANIFEST"
                print(f"{name}: baseline ...", file=sys.stderr, flush=True)
                results[(name, "baseline")] = run_child("baseline", url, args)
                for kind in kinds:
                    with database(kind, args.postgres_url) as (db_url, data_dir):
                        print(f"{name}: pallet on {kind} ...", file=sys.stderr, flush=True)
                        results[(name, kind)] = run_child("pallet", url, args, db_url, data_dir)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    return results


def report(results: dict, args) -> bool:
    ok = True
    counts = {"small": args.small, "large": args.large}
    sizes = {"small": args.small_size, "large": args.large_size}
    print(f"\nImmediate sync from nginx on 127.0.0.1, concurrency {args.concurrency}\n")
    print(f"{'workload':<34}{'run':<12}{'time':>9}{'x baseline':>12}{'target':>9}"
          f"{'MB/s':>9}{'peak RSS':>10}")
    for name in [n for n in ("small", "large") if (n, "baseline") in results]:
        label = f"{counts[name]:,} files of {sizes[name] / 1024:g} KiB"
        baseline = results[(name, "baseline")]
        total_mb = counts[name] * sizes[name] / MiB
        for run in [k for (n, k) in results if n == name]:
            figures = results[(name, run)]
            ratio = figures["seconds"] / baseline["seconds"]
            target = "" if run == "baseline" else f"<= {TARGETS[name]:g}"
            note = ""
            if run != "baseline":
                if figures["units"] != counts[name] or figures["version"] != 1:
                    note, ok = f"  *** version has {figures['units']} units ***", False
            print(f"{label:<34}{run:<12}{figures['seconds']:>8.2f}s{ratio:>11.2f}x{target:>9}"
                  f"{total_mb / figures['seconds']:>9.0f}{figures['peak_mb']:>8.0f}MB{note}")
            label = ""
    print("\nbaseline: aiohttp with the same concurrency, manifest then files to disk with "
          "sha256 checked\n(no database, no fsync). pallet: the sync task from start to its "
          "committed version.\nPeak RSS is each child's VmHWM reset just before the timed step.")
    return ok


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--small", type=int, default=10_000, help="number of small files")
    parser.add_argument("--small-size", type=int, default=4096)
    parser.add_argument("--large", type=int, default=40, help="number of large files")
    parser.add_argument("--large-size", type=int, default=25 * MiB)
    parser.add_argument("--concurrency", type=int, default=10)
    parser.add_argument("--database", choices=("sqlite", "postgresql", "both"), default="sqlite")
    parser.add_argument("--postgres-url", default=DEFAULT_POSTGRES_URL)
    for hidden in ("--child", "--child-url", "--child-db", "--child-dir"):
        parser.add_argument(hidden, help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.child:
        print(json.dumps(CHILDREN[args.child](args)))
        return 0
    return 0 if report(measure(args), args) else 1


if __name__ == "__main__":
    sys.exit(main())
