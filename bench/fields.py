"""Benchmark: finding units by their type's indexed fields among a million, on SQLite and
PostgreSQL: packages by name and arch, and the packages an advisory names.

    python bench/fields.py [--units N] [--advisories M] [--database sqlite|postgresql|both]

Setup (timed, not the headline) bulk-loads N `rpm.package` units (fields as a yum
repository has them, no files) and M advisories naming 10 of them each, recorded through
`record_units` (so their references are stored), all in version 1 of one repository. Then:
  by name and arch  -- 1,000 look-ups `fields_match(rpm.package, {name, arch})`: the index;
                       baseline: the same look-ups with the index dropped (a JSON scan),
                       a few of them, per look-up;
  by name           -- the same on the index's leading field alone;
  advisory's pkgs   -- 200 advisories: their stored references, each package found by
                       NEVRA and kept if version 1 holds it (repositories/copy.py's path);
  copy selection    -- `copy.select_units` of 100 advisories with their references.
Not a test: it prints figures. Exits 1 if a look-up finds the wrong units.
"""

from __future__ import annotations

import argparse
from datetime import datetime, timezone
import hashlib
import random
import statistics
import sys
import time

from sqlalchemy import select, text

from pallet.content.bulk import NewUnit, record_units
from pallet.content.fields import fields_match, index_name
from pallet.content.identity import identity_digest, repository_key_digest
from pallet.content.models import Content, ContentReference
from pallet.db.bulk import batched, insert_values
from pallet.db.migrate import upgrade
from pallet.plugins.rpm import advisory, package
from pallet.repositories import copy, versions
from pallet.repositories.models import RepositoryContent as RC
from pallet.repositories.service import create_repository
from pallet.runtime import Runtime
from pallet.settings import Settings

from harness import DEFAULT_POSTGRES_URL, database, database_kinds, timed

ARCHES = ("x86_64", "noarch", "i686", "aarch64")
LOOKUPS = 1000
CREATED_AT = datetime(2025, 1, 1, tzinfo=timezone.utc)


def nevra(i: int) -> dict[str, str]:
    return {"name": f"pkg{i // 4}", "epoch": "0", "version": f"{i % 7}.{i % 13}",
            "release": f"{i % 3 + 1}.el9", "arch": ARCHES[i % 4]}


def load(runtime: Runtime, units: int, advisories: int) -> int:
    """N packages and M advisories in version 1 of repository `bench`; its id."""
    with runtime.db.write() as session:
        repository = create_repository(session, runtime.plugins, name="bench", type="rpm")
        repository_id = repository.id
    for batch in batched(range(units), 50_000):
        rows, members = [], []
        for i in batch:
            fields = nevra(i)
            fields["pkgid"] = hashlib.sha256(str(i).encode()).hexdigest()
            rows.append((package.TYPE, identity_digest(package.TYPE, fields), fields,
                         CREATED_AT))
        with runtime.db.write() as session:
            insert_values(session, Content.__table__, ("type", "digest", "data", "created_at"),
                          rows)
            first = session.scalar(select(Content.id).where(Content.digest == rows[0][1]))
            members = [(repository_id, first + n, 1,
                        repository_key_digest(package.TYPE, row[2], package.NEVRA))
                       for n, row in enumerate(rows)]
            insert_values(session, RC.__table__, ("repository_id", "content_id",
                                                  "version_added", "repository_key"), members)
    rng = random.Random(7)
    made = []
    for n in range(advisories):
        packages = [nevra(rng.randrange(units)) for _ in range(10)]
        fields = advisory.Advisory(id=f"PALLET-{n:05d}", collections=[
            {"name": "c", "packages": packages}]).model_dump(mode="json")
        made.append(NewUnit(advisory.TYPE, identity_digest(
            advisory.TYPE, {k: fields[k] for k in advisory.FIELDS}), fields, ()))
    with runtime.db.write() as session:
        ids = record_units(session, runtime.plugins, made, {})
        insert_values(session, RC.__table__, ("repository_id", "content_id", "version_added",
                                              "repository_key"),
                      [(repository_id, ids[u.digest], 1, repository_key_digest(
                          advisory.TYPE, u.data, ("id",))) for u in made])
        session.execute(text(f"UPDATE repository SET next_version = 2 WHERE id = {repository_id}"))
    with runtime.db.write() as session:  # fresh statistics, as a server's autovacuum has
        session.execute(text("ANALYZE"))
    return repository_id


def look_ups(runtime: Runtime, wanted: list[dict[str, str]]) -> tuple[float, bool]:
    """Median seconds of one look-up, and whether every one found the units it should."""
    times, right = [], True
    with runtime.db.read() as session:
        for fields in wanted:
            start = time.perf_counter()
            found = session.execute(select(Content.data).where(
                fields_match(package.TYPE, fields))).all()
            times.append(time.perf_counter() - start)
            right &= bool(found) and all(all(row[0][k] == v for k, v in fields.items())
                                         for row in found)
    return statistics.median(times), right


def measure(kind: str, url: str, data_dir, args) -> dict:
    runtime = Runtime.create(Settings(data_dir=data_dir, database_url=url))
    try:
        upgrade(runtime.db, plugins=runtime.plugins)
        results: dict = {}
        repository_id, results["setup"] = timed(load, runtime, args.units, args.advisories)
        rng = random.Random(1)
        by_both = [{k: nevra(i)[k] for k in ("name", "arch")}
                   for i in (rng.randrange(args.units) for _ in range(LOOKUPS))]
        by_name = [{"name": f["name"]} for f in by_both]
        results["name_arch"], ok1 = look_ups(runtime, by_both)
        results["name"], ok2 = look_ups(runtime, by_name)
        with runtime.db.read() as session:
            repository = session.get(copy.Repository, repository_id)
            ids = list(session.scalars(select(Content.id).where(
                Content.type == advisory.TYPE).limit(200)))
            start = time.perf_counter()
            for unit in ids:
                copy._follow(session, repository, 1, {unit})
            results["advisory"] = (time.perf_counter() - start) / len(ids)
            names = [{"type": advisory.TYPE, "fields": {"id": f"PALLET-{n:05d}"}}
                     for n in range(100)]
            selection, results["copy"] = timed(copy.select_units, session, runtime.plugins,
                                               repository, 1, match=names)
            results["copy_units"] = len(selection.units)
        with runtime.db.write() as session:  # the baseline: no index, a JSON scan
            session.execute(text(f"DROP INDEX {index_name(package.TYPE, ('name', 'arch'))}"))
        results["scan"], ok3 = look_ups(runtime, by_both[:5])
        results["ok"] = ok1 and ok2 and ok3
        return results
    finally:
        runtime.close()


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--units", type=int, default=1_000_000)
    parser.add_argument("--advisories", type=int, default=2_000)
    parser.add_argument("--database", choices=("sqlite", "postgresql", "both"), default="both")
    parser.add_argument("--postgres-url", default=DEFAULT_POSTGRES_URL)
    args = parser.parse_args(argv)
    ok = True
    print(f"{args.units:,} packages, {args.advisories:,} advisories naming 10 each\n")
    print(f"{'database':<12}{'setup':>8}{'name+arch':>12}{'name':>10}{'JSON scan':>12}"
          f"{'index x faster':>16}{'advisory pkgs':>15}{'copy 100 adv.':>15}")
    for kind in database_kinds(args):
        with database(kind, args.postgres_url) as (url, data_dir):
            r = measure(kind, url, data_dir, args)
        ok &= r["ok"]
        print(f"{kind:<12}{r['setup']:>7.0f}s{r['name_arch'] * 1e3:>10.2f}ms"
              f"{r['name'] * 1e3:>8.2f}ms{r['scan'] * 1e3:>10.0f}ms"
              f"{r['scan'] / r['name_arch']:>15.0f}x{r['advisory'] * 1e3:>13.2f}ms"
              f"{r['copy']:>13.2f}s ({r['copy_units']} units)")
    print("\nEach look-up: one SELECT of the units with those field values, median of "
          f"{LOOKUPS:,} (the scan: of 5, the index dropped).\nadvisory pkgs: one advisory's "
          "stored references followed to the packages version 1 holds (mean of 200).")
    if not ok:
        print("*** a look-up found the wrong units ***")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
