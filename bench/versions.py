"""Benchmark: versioning a repository of N `file` units, on SQLite and PostgreSQL.

    python bench/versions.py [--units N] [--changes-percent P] [--database sqlite|postgresql|both]

Setup bulk-loads N content units and version 1 holding them (plus the P% new units to add).
Then, each in a fresh child process so its peak RSS is its own:
  create   -- versions.create_version adding P% new units and removing P% present ones;
  diff     -- versions.diff_counts, and all ids of versions.diff_queries, of versions 1 -> 2;
  digest   -- the digest version 2 stored, re-derived incrementally and by recompute_digest;
  baseline -- the physical floor of the same work, measured on the same data (see LEGEND).
Not a test: it prints figures. Exits 1 if a check fails or a step times out.
See bench/README.md.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import subprocess
import sys
import time
from pathlib import Path

from sqlalchemy import select, text

from pallet.content.identity import identity_digest, repository_key_digest
from pallet.content.models import Content
from pallet.db.bulk import batched
from pallet.db.migrate import upgrade
from pallet.repositories import versions
from pallet.repositories.contentset import LtHash
from pallet.repositories.models import RepositoryContent as RC, RepositoryVersion
from pallet.repositories.service import create_repository, get_repository
from pallet.runtime import Runtime
from pallet.settings import Settings

from harness import (DEFAULT_POSTGRES_URL, database, database_kinds, memory_mb, reset_peak,
                     timed)

REPO = "bench"
CREATED_AT = "2025-01-01 00:00:00.000000"
TARGET_SECONDS, TARGET_MB = 2.0, 300

LEGEND = """\
Baselines, measured in the same run on the same data:
  raw writes      the rows the new version must change, as two set-at-a-time SQL statements
                  (UPDATE of P% present rows, INSERT of P% rows with their repository keys,
                  which it computes) in a transaction rolled back: the database's floor for
                  create_version.
  hash changes    LtHash of the 2*P% changed identities already in RAM: the CPU floor of the
                  incremental digest.
  full scan       SELECT of every content id of version 2 into Python: the O(N) read that an
                  O(changes) version and diff must avoid.
  set difference  Python set differences of the two versions' ids, already in RAM: a naive
                  in-memory diff, not counting the two full scans it would need.
  hash all        LtHash of all N identities already in RAM: the CPU floor of recompute_digest.
  incremental     (not a baseline) version 1's stored LtHash state plus the digests of
                  version 2's own membership rows: the O(changes) way, timed on its own.
Each step runs in a fresh child process. "RSS before" is that process's RSS just before the
step (interpreter, pallet, one database connection); "peak RSS" is its VmHWM, reset right
before the step (/proc/self/clear_refs), so it is the step's own peak. (getrusage/wait4 are
not used: on Linux a child's ru_maxrss includes its parent's RSS at fork.)"""


# -- the data -------------------------------------------------------------------------------

def plan(units: int, percent: float) -> tuple[list[int], list[int]]:
    """Content ids to add (new units after the first N) and to remove (spread over 1..N)."""
    changes = max(1, round(units * percent / 100))
    step = max(1, units // changes)
    return list(range(units + 1, units + changes + 1)), list(range(1, units + 1, step))[:changes]


def content_row(i: int) -> tuple:
    key = {"relative_path": unit_path(i), "sha256": hashlib.sha256(i.to_bytes(8, "big")).hexdigest()}
    return i, "file", identity_digest("file", key), json.dumps(key), CREATED_AT


def unit_path(i: int) -> str:
    return f"pool/{i % 997:03d}/file-{i:08d}.bin"


def path_key(i: int) -> str:
    """The repository key digest of unit i (its relative path), as versions stores it."""
    return repository_key_digest("file", {"relative_path": unit_path(i)}, ("relative_path",))


def write_rows(connection, table: str, columns: tuple[str, ...], rows: list[tuple]) -> None:
    if not rows:
        return
    if connection.dialect.name == "postgresql":
        with connection.connection.driver_connection.cursor() as cursor, \
                cursor.copy(f"COPY {table} ({', '.join(columns)}) FROM STDIN") as copy:
            for row in rows:
                copy.write_row(row)
    else:
        marks = ", ".join("?" * len(columns))
        connection.exec_driver_sql(f"INSERT INTO {table} ({', '.join(columns)}) "
                                   f"VALUES ({marks})", rows)


def setup(runtime: Runtime, units: int, percent: float) -> float:
    """Content rows 1..N+changes, and version 1 holding 1..N with a correct digest and counts."""
    start = time.perf_counter()
    upgrade(runtime.db)
    add, _ = plan(units, percent)
    lthash = LtHash()
    with runtime.db.write() as session:
        repository = create_repository(session, runtime.plugins, name=REPO, type="file")
        connection = session.connection()
        for batch in batched(range(1, units + len(add) + 1), 50_000):
            rows = [content_row(i) for i in batch]
            write_rows(connection, "content", ("id", "type", "digest", "data", "created_at"), rows)
            members = [(repository.id, i, 1, path_key(i)) for i in batch if i <= units]
            write_rows(connection, "repository_content",
                       ("repository_id", "content_id", "version_added", "repository_key"),
                       members)
            lthash.add(row[2] for row in rows if row[0] <= units)
        session.add(RepositoryVersion(
            repository_id=repository.id, number=1, lthash=lthash.state, digest=lthash.digest,
            counts={"file": {"added": units, "removed": 0, "present": units}}))
        repository.next_version = 2
        if runtime.db.dialect == "postgresql":
            session.execute(text("SELECT setval(pg_get_serial_sequence('content', 'id'), :n)"),
                            {"n": units + len(add)})
    if runtime.db.dialect == "postgresql":  # what autovacuum does soon after a bulk load
        with runtime.db.engine.connect() as connection:
            connection.execution_options(isolation_level="AUTOCOMMIT").exec_driver_sql("ANALYZE")
    return time.perf_counter() - start


# -- the child processes --------------------------------------------------------------------

def child_create(runtime: Runtime, units: int, percent: float) -> dict:
    add, remove = plan(units, percent)
    before = reset_peak()

    def create():
        with runtime.db.write() as session:
            repository = get_repository(session, REPO)
            version = versions.create_version(session, runtime.plugins, repository,
                                              add=add, remove=remove)
            return version.number, version.counts

    (number, counts), seconds = timed(create)
    expected = {"file": {"added": len(add), "removed": len(remove), "present": units}}
    return {"create_s": seconds, "rss_before_mb": before, "create_peak_mb": memory_mb("VmHWM"),
            "counts_ok": number == 2 and counts == expected}


def child_diff(runtime: Runtime, units: int, percent: float) -> dict:
    add, remove = plan(units, percent)
    reset_peak()
    with runtime.db.read() as session:
        repository = get_repository(session, REPO)
        counts, counts_s = timed(versions.diff_counts, session, repository, 1, 2)
        added_q, removed_q = versions.diff_queries(repository, 1, 2)
        (added, removed), ids_s = timed(
            lambda: (set(session.scalars(added_q)), set(session.scalars(removed_q))))
    return {"diff_counts_s": counts_s, "diff_ids_s": ids_s, "diff_peak_mb": memory_mb("VmHWM"),
            "diff_ok": added == set(add) and removed == set(remove)
            and counts == {"file": {"added": len(add), "removed": len(remove)}}}


def child_digest(runtime: Runtime, units: int, percent: float) -> dict:
    reset_peak()
    with runtime.db.read() as session:
        repository = get_repository(session, REPO)
        stored = versions.get_version(session, repository, 2).digest
        recomputed, recompute_s = timed(versions.recompute_digest, session, repository, 2)
        incremental, incremental_s = timed(incremental_digest, session, repository)
    return {"incremental_s": incremental_s, "recompute_s": recompute_s,
            "digest_peak_mb": memory_mb("VmHWM"), "stored_digest": stored,
            "digest_ok": stored == recomputed == incremental}


def incremental_digest(session, repository) -> str:
    """Version 2's digest from version 1's stored state and version 2's own membership rows."""
    lthash = LtHash(versions.get_version(session, repository, 1).lthash)
    for column, apply in ((RC.version_added, lthash.add), (RC.version_removed, lthash.remove)):
        apply(session.scalars(select(Content.digest).join(RC, RC.content_id == Content.id)
                              .where(RC.repository_id == repository.id, column == 2)))
    return lthash.digest


def child_baseline(runtime: Runtime, units: int, percent: float) -> dict:
    add, remove = plan(units, percent)
    reset_peak()
    with runtime.db.read() as session:
        repository = get_repository(session, REPO)
        v1, v2 = (versions.content_ids_query(repository, n) for n in (1, 2))
        ids2, scan_s = timed(lambda: set(session.scalars(v2)))
        ids1 = set(session.scalars(v1))
        _, setdiff_s = timed(lambda: (ids2 - ids1, ids1 - ids2))
        del ids1, ids2
        digests = list(session.scalars(select(Content.digest).where(Content.id <= units)
                                       .order_by(Content.id)))
    leaving, coming = [digests[i - 1] for i in remove], [content_row(i)[2] for i in add]
    _, hash_changes_s = timed(lambda: LtHash().add(coming).remove(leaving))
    _, hash_all_s = timed(lambda: LtHash().add(digests))
    other = [i + 1 for i in remove]  # a different P% of present rows, so nothing collides
    _, raw_s = timed(raw_writes, runtime, repository.id, other, add)
    return {"raw_writes_s": raw_s, "hash_changes_s": hash_changes_s, "scan_s": scan_s,
            "setdiff_s": setdiff_s, "hash_all_s": hash_all_s,
            "baseline_peak_mb": memory_mb("VmHWM")}


RAW_SQL = {  # SQLite: `+` makes it find rows by content id, the fastest plan
    "sqlite": ("UPDATE repository_content SET version_removed = 3 WHERE repository_id = :repo "
               "AND +version_removed IS NULL AND content_id IN (SELECT value FROM json_each(:ids))",
               "INSERT INTO repository_content (repository_id, content_id, version_added, "
               "repository_key) SELECT :repo, json_extract(value, '$[0]'), 3, "
               "json_extract(value, '$[1]') FROM json_each(:rows)"),
    "postgresql": ("UPDATE repository_content SET version_removed = 3 WHERE repository_id = "
                   ":repo AND version_removed IS NULL AND content_id = ANY(:ids)",
                   "INSERT INTO repository_content (repository_id, content_id, version_added, "
                   "repository_key) SELECT :repo, unnest(CAST(:ids AS bigint[])), 3, "
                   "unnest(CAST(:keys AS text[]))"),
}


def raw_writes(runtime: Runtime, repository_id: int, remove: list[int], add: list[int]) -> None:
    """The same amount of membership writes as one new version, rolled back afterwards."""
    update, insert = RAW_SQL[runtime.db.dialect]
    sqlite = runtime.db.dialect == "sqlite"
    wrap = json.dumps if sqlite else list
    # Keys are computed by versions too, so part of the floor; these are of paths no unit
    # has (version 2 holds `add`'s, and the open-key index would refuse them again).
    keys = [path_key(i + len(add)) for i in add]
    rows = ({"rows": json.dumps([[i, key] for i, key in zip(add, keys)])} if sqlite
            else {"ids": add, "keys": keys})
    with runtime.db.engine.connect() as connection:
        transaction = connection.begin()
        connection.execute(text(update), {"repo": repository_id, "ids": wrap(remove)})
        connection.execute(text(insert), {"repo": repository_id, **rows})
        transaction.rollback()


CHILDREN = {"create": child_create, "diff": child_diff, "digest": child_digest,
            "baseline": child_baseline}


def run_child(phase: str, url: str, data_dir: Path, args) -> dict:
    """Run one phase in a fresh interpreter, so its memory is its own; return its figures."""
    command = [sys.executable, __file__, "--child", phase, "--child-url", url,
               "--child-dir", str(data_dir), "--units", str(args.units),
               "--changes-percent", str(args.changes_percent)]
    try:
        done = subprocess.run(command, stdout=subprocess.PIPE, text=True,
                              timeout=args.step_timeout or None)
    except subprocess.TimeoutExpired:
        print(f"  {phase} did not finish in {args.step_timeout:g} s: stopped", file=sys.stderr)
        return {f"{phase}_timeout": True}
    if done.returncode:
        raise SystemExit(f"the {phase} child failed with exit code {done.returncode}")
    return json.loads(done.stdout.splitlines()[-1])


def child_main(args) -> None:
    runtime = Runtime.create(Settings(data_dir=args.child_dir, database_url=args.child_url))
    try:
        print(json.dumps(CHILDREN[args.child](runtime, args.units, args.changes_percent)))
    finally:
        runtime.close()


# -- the parent -----------------------------------------------------------------------------

def measure(kind: str, args) -> dict:
    with database(kind, args.postgres_url) as (url, data_dir):
        print(f"{kind}: setting up {args.units:,} units ...", file=sys.stderr, flush=True)
        runtime = Runtime.create(Settings(data_dir=data_dir, database_url=url))
        try:
            figures = {"setup_s": setup(runtime, args.units, args.changes_percent)}
        finally:
            runtime.close()
        for phase in CHILDREN:
            print(f"{kind}: {phase} ...", file=sys.stderr, flush=True)
            figures.update(run_child(phase, url, data_dir, args))
        return figures


ROWS = [  # (label, phase, key, format)
    ("setup: N content rows + version 1", "setup", "setup_s", "{:.1f} s"),
    (f"create_version (target < {TARGET_SECONDS:g} s)", "create", "create_s", "{:.3f} s"),
    ("  baseline: raw writes", "baseline", "raw_writes_s", "{:.3f} s"),
    ("  baseline: hash changes", "baseline", "hash_changes_s", "{:.3f} s"),
    ("  RSS before create_version", "create", "rss_before_mb", "{:.0f} MB"),
    (f"  peak RSS of create_version (< {TARGET_MB} MB)", "create", "create_peak_mb",
     "{:.0f} MB"),
    ("diff_counts 1 -> 2", "diff", "diff_counts_s", "{:.3f} s"),
    ("diff ids 1 -> 2 (diff_queries)", "diff", "diff_ids_s", "{:.3f} s"),
    ("  baseline: full scan", "baseline", "scan_s", "{:.3f} s"),
    ("  baseline: set difference", "baseline", "setdiff_s", "{:.3f} s"),
    ("  peak RSS of the diff", "diff", "diff_peak_mb", "{:.0f} MB"),
    ("digest, incremental (v1 state + v2 rows)", "digest", "incremental_s", "{:.3f} s"),
    ("digest, recompute_digest", "digest", "recompute_s", "{:.3f} s"),
    ("  baseline: hash all", "baseline", "hash_all_s", "{:.3f} s"),
    ("  peak RSS of the digests", "digest", "digest_peak_mb", "{:.0f} MB"),
    ("  peak RSS of the baselines", "baseline", "baseline_peak_mb", "{:.0f} MB"),
]
CHECKS = [("version 2 counts", "create", "counts_ok"), ("diff ids and counts", "diff", "diff_ok"),
          ("digest: stored = incremental = recomputed", "digest", "digest_ok")]


def cell(figures: dict, phase: str, key: str, fmt: str) -> str:
    if figures.get(f"{phase}_timeout"):
        return "TIMEOUT"
    return fmt.format(figures[key])


def report(results: dict[str, dict], args) -> bool:
    """Print the table and the checks; True if every check passed."""
    add, remove = plan(args.units, args.changes_percent)
    print(f"\nVersioning {args.units:,} file units: the new version adds {len(add):,} and "
          f"removes {len(remove):,} ({args.changes_percent:g}% each)\n")
    print(f"{'':46}" + "".join(f"{kind:>14}" for kind in results))
    for label, phase, key, fmt in ROWS:
        print(f"{label:46}" + "".join(f"{cell(f, phase, key, fmt):>14}" for f in results.values()))
    ok = True
    for kind, figures in results.items():
        for label, phase, key in CHECKS:
            verdict = ("NOT CHECKED (timeout)" if figures.get(f"{phase}_timeout")
                       else "MATCH" if figures[key] else "*** MISMATCH ***")
            ok &= verdict == "MATCH"
            print(f"{kind:>10}  {label}: {verdict}")
        if not figures.get("digest_timeout"):
            print(f"{kind:>10}  digest of version 2: {figures['stored_digest']}")
        if figures.get("create_timeout") or figures["create_s"] > TARGET_SECONDS \
                or figures["create_peak_mb"] > TARGET_MB:
            print(f"{kind:>10}  *** create_version misses its target "
                  f"(< {TARGET_SECONDS:g} s, < {TARGET_MB} MB) ***")
    print("\n" + LEGEND)
    return ok


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--units", type=int, default=1_000_000)
    parser.add_argument("--changes-percent", type=float, default=1.0)
    parser.add_argument("--database", choices=("sqlite", "postgresql", "both"), default="both")
    parser.add_argument("--postgres-url",
                        default=DEFAULT_POSTGRES_URL)
    parser.add_argument("--step-timeout", type=float, default=900,
                        help="stop a step that runs longer (seconds; 0: no limit)")
    for hidden in ("--child", "--child-url", "--child-dir"):
        parser.add_argument(hidden, help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.child:
        child_main(args)
        return 0
    kinds = database_kinds(args)
    results = {kind: measure(kind, args) for kind in kinds}
    return 0 if report(results, args) else 1


if __name__ == "__main__":
    sys.exit(main())
