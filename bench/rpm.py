"""Benchmark: the rpm content type -- syncing yum metadata, re-syncing it, publishing it, and an
immediate sync of real RPMs -- each beside a physical baseline measured in the same run.

    python bench/rpm.py [--packages N] [--rpms N] [--database sqlite|postgresql|both]

Setup (timed, not the headline): yum metadata for N packages (default 50,000) written with
createrepo_c's own writers, and a second copy in which 1% of the names have a new version;
nginx serves them on 127.0.0.1. Then, each step in a fresh child process:
  on-demand sync   -- dnf makecache (fresh installroot) / a fresh Pallet's `remote.sync` task
  re-sync          -- nothing changed, then 1% changed: dnf makecache again / `remote.sync`
  publish          -- createrepo_c's writers over packages already in memory / the
                      `publication.create` task (in rounds, the median counts)
  copy             -- 200 names with their dependencies from a repository whose
                      dependencies resolve: dnf -C install --assumeno / `repository.copy`
  immediate sync   -- 200 small real RPMs (built once with rpmbuild, cached): aiohttp
                      download with the same concurrency / `remote.sync`, immediate policy
Not a test: it prints figures. Exits 1 if a step fails or a version is wrong.
"""

from __future__ import annotations

import argparse
import asyncio
import gzip
import hashlib
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

from harness import (DEFAULT_POSTGRES_URL, database, database_kinds, download_checked,
                     ensure_commands, memory_mb, nginx, reset_peak, timed)

ROOT = Path(__file__).resolve().parent.parent
MiB = 1 << 20
CHANGED_EVERY = 100  # 1% of the names get a new version in the changed repository
TARGETS = {  # step: (at most this many times the baseline, absolute seconds, peak RSS MB)
    "sync": (2.0, None, 200),
    "resync-same": (None, 0.5, None),
    "resync-changed": (None, 2.0, None),
    "publish": (1.5, None, None),
    "copy": (None, None, None),
    "immediate": (None, None, None),
}
DEFAULT_RPM_CACHE = Path(tempfile.gettempdir()) / "pallet-bench-rpm-cache"


# -- yum metadata for N packages -------------------------------------------------------------

PREFIXES = ("", "lib", "python3-", "perl-", "golang-github-", "rust-", "texlive-", "ghc-",
            "nodejs-", "php-", "xorg-x11-", "gnome-", "kf5-", "mingw64-", "R-", "ocaml-")
WORDS = ("zlib", "openssl", "curl", "bash", "glib", "gtk", "cairo", "pango", "harfbuzz", "yaml",
         "json", "xml", "sqlite", "boost", "qt", "kernel", "systemd", "dbus", "pam", "krb5",
         "nss", "nspr", "icu", "pcre", "lua", "ruby", "tcl", "llvm", "clang", "gcc", "binutils",
         "elfutils", "audit", "selinux", "policy", "ncurses", "readline", "expat", "libxml",
         "requests", "urllib", "numpy", "scipy", "pandas", "flask", "django", "moose", "dateutil")
LIBS = ("libc.so.6()(64bit)", "libm.so.6()(64bit)", "libz.so.1()(64bit)",
        "libpthread.so.0()(64bit)", "libcrypto.so.3()(64bit)", "libssl.so.3()(64bit)",
        "libglib-2.0.so.0()(64bit)", "libstdc++.so.6()(64bit)", "libgcc_s.so.1()(64bit)",
        "rtld(GNU_HASH)", "/bin/sh", "/usr/bin/python3", "python(abi) = 3.12")
LOREM = ("The package provides a library and command-line tools for working with data in a "
         "portable way. It is used by many other programs in the distribution and supports "
         "reading, writing and validating its formats with bindings for several languages. "
         "This build enables the optional features, ships the documentation in a separate "
         "subpackage and carries the fixes published upstream since the last release. ")


def package_name(i: int) -> str:
    return f"{PREFIXES[i % len(PREFIXES)]}{WORDS[(i // 7) % len(WORDS)]}{i}"


def make_package(i: int, bump: int = 0):
    """createrepo_c's Package for the i-th name; `bump` gives it a newer version."""
    import createrepo_c as cr

    rng = random.Random(i * 1000 + bump)
    name = package_name(i)
    arch = "noarch" if i % 5 == 0 else "x86_64"
    version = f"{rng.randint(0, 9)}.{rng.randint(0, 40)}.{rng.randint(0, 20) + bump}"
    release = f"{rng.randint(1, 12)}.fc40"
    p = cr.Package()
    p.name, p.epoch, p.version, p.release, p.arch = name, "0", version, release, arch
    p.pkgId = hashlib.sha256(f"{name}-{version}-{release}.{arch}".encode()).hexdigest()
    p.checksum_type = "sha256"
    p.summary = f"{WORDS[(i // 7) % len(WORDS)].capitalize()} {name} for the distribution"
    start = rng.randrange(len(LOREM) // 2)
    p.description = (LOREM[start:] + LOREM[:start])[:200 + rng.randrange(300)]
    p.url = f"https://example.invalid/projects/{name}"
    p.rpm_license = ("MIT", "GPL-2.0-or-later", "Apache-2.0", "BSD-3-Clause")[i % 4]
    p.rpm_vendor = "Pallet Bench"
    p.rpm_group = "Unspecified"
    p.rpm_buildhost = f"buildvm-x86-{i % 32:02d}.example.invalid"
    p.rpm_sourcerpm = f"{name}-{version}-{release}.src.rpm"
    p.rpm_packager = "Pallet Bench <bench@example.invalid>"
    p.time_file = p.time_build = 1704067200 + i * 60 + bump
    p.size_package = 20_000 + rng.randrange(2_000_000)
    p.size_installed = p.size_package * 3
    p.size_archive = p.size_installed + 1024
    p.rpm_header_start, p.rpm_header_end = 4504, 4504 + rng.randrange(20_000, 80_000)
    p.location_href = f"Packages/{name[0].lower()}/{name}-{version}-{release}.{arch}.rpm"
    requires = [(lib, None, None, None, None, False) for lib in rng.sample(LIBS, 6)]
    requires += [(package_name(rng.randrange(i + 1)), "GE", "0", f"{rng.randint(0, 9)}.0",
                  None, False) for _ in range(8)]
    requires.append(("/bin/sh", None, None, None, None, True))
    p.requires = requires
    provides = [(name, "EQ", "0", version, release, False),
                (f"{name}(x86-64)" if arch != "noarch" else f"{name}-doc", "EQ", "0", version,
                 release, False)]
    provides += [(f"lib{name}.so.{n}()(64bit)", None, None, None, None, False) for n in range(7)]
    provides += [(f"bundled({WORDS[(i + n) % len(WORDS)]})", "EQ", "0", f"{n}.{i % 10}",
                  None, False) for n in range(6)]
    p.provides = provides
    files = [(None, f"/usr/lib64/{name}/", f"module{n:02d}.so") for n in range(12)]
    files += [(None, "/usr/bin/", f"{name}-tool{n}") for n in range(4)]
    files += [(None, f"/usr/share/doc/{name}/", doc) for doc in ("README.md", "NEWS")]
    files += [("dir", "/usr/lib64/", name), ("ghost", f"/var/cache/{name}/", "state")]
    p.files = files
    p.changelogs = [(f"Packager {n} <packager{n}@example.invalid> - {version}-{release}",
                     p.time_build - n * 86400 * 30,
                     f"- Update to {version}; fixes issue #{i * 3 + n} and rebuilds for the "
                     f"new toolchain") for n in range(3)]
    return p


def write_repodata(target: Path, packages) -> None:
    """repodata/ of `packages` (an iterable of createrepo_c Packages), gz-compressed, named by
    sha256 as createrepo_c names them, with its repomd.xml."""
    import createrepo_c as cr

    repodata = target / "repodata"
    repodata.mkdir(parents=True)
    packages = list(packages) if not isinstance(packages, list) else packages
    paths = {kind: repodata / f"{kind}.xml.gz" for kind in ("primary", "filelists", "other")}
    writers = {"primary": cr.PrimaryXmlFile(str(paths["primary"]), cr.GZ_COMPRESSION),
               "filelists": cr.FilelistsXmlFile(str(paths["filelists"]), cr.GZ_COMPRESSION),
               "other": cr.OtherXmlFile(str(paths["other"]), cr.GZ_COMPRESSION)}
    for writer in writers.values():
        writer.set_num_of_pkgs(len(packages))
    for package in packages:
        for writer in writers.values():
            writer.add_pkg(package)
    for writer in writers.values():
        writer.close()
    repomd = cr.Repomd()
    for kind, path in paths.items():
        record = cr.RepomdRecord(kind, str(path))
        record.fill(cr.SHA256)
        record.rename_file()
        repomd.set_record(record)
    repomd.set_revision("1704067200")
    (repodata / "repomd.xml").write_text(repomd.xml_dump())


def make_metadata(root: Path, count: int) -> dict:
    """root/base (N packages) and root/changed (1% of the names one version newer): only
    repodata/, no .rpm files. Returns sizes for the report."""
    base = [make_package(i) for i in range(count)]
    write_repodata(root / "base", base)
    changed = [make_package(i, bump=1) if i % CHANGED_EVERY == 0 else base[i]
               for i in range(count)]
    del base
    write_repodata(root / "changed", changed)
    return {kind: sum(f.stat().st_size for f in (root / "base" / "repodata").glob(f"*{kind}*"))
            for kind in ("primary", "filelists", "other")}


# -- a repository whose dependencies resolve, for the copy ------------------------------------

# Base library packages, first in the repository: between them they provide every one of LIBS.
BASE = (("glibc", LIBS[0:2] + LIBS[3:4] + LIBS[9:10]), ("zlib", LIBS[2:3]),
        ("openssl-libs", LIBS[4:6]), ("glib2", LIBS[6:7]), ("libstdc++", LIBS[7:8]),
        ("libgcc", LIBS[8:9]), ("bash", LIBS[10:11]), ("python3", LIBS[11:13]))


def dependent_packages(count: int):
    """`count` createrepo_c Packages whose every requirement is provided within them: the
    BASE packages, then packages as `make_package` makes them, each requiring 4 of LIBS
    (provided by BASE), two earlier packages by name at least at their version, a third
    by its soname, and /bin/sh (pre)."""
    versions: list[str] = []
    for i in range(count):
        if i < len(BASE):
            p = make_package(i)
            name, provided = BASE[i]
            p.name, p.arch = name, "x86_64"
            p.pkgId = hashlib.sha256(f"base {name}".encode()).hexdigest()
            p.location_href = f"Packages/{name[0]}/{name}-{p.version}-{p.release}.x86_64.rpm"
            p.rpm_sourcerpm = f"{name}-{p.version}-{p.release}.src.rpm"
            p.provides = [(name, "EQ", "0", p.version, p.release, False),
                          *((dep, None, None, None, None, False) for dep in provided)]
            p.requires = []
        else:
            p = make_package(i)
            rng = random.Random(i * 7919 + 1)
            earlier = [rng.randrange(len(BASE), i) for _ in range(3)] if i > len(BASE) else []
            requires = [(lib, None, None, None, None, False) for lib in rng.sample(LIBS, 4)]
            requires += [(package_name(j), "GE", "0", versions[j], None, False)
                         for j in earlier[:2]]
            requires += [(f"lib{package_name(j)}.so.0()(64bit)", None, None, None, None, False)
                         for j in earlier[2:]]
            requires.append(("/bin/sh", None, None, None, None, True))
            p.requires = requires
        versions.append(p.version)
        yield p


def copied_names(count: int, names: int) -> list[str]:
    """The names the copy asks for: `names` of the non-base packages, spread at random."""
    chosen = random.Random(0).sample(range(len(BASE), count), min(names, count - len(BASE)))
    return [package_name(i) for i in sorted(chosen)]


# -- real RPMs for the immediate sync ---------------------------------------------------------

def small_rpms(cache: Path, count: int, size: int) -> list[Path]:
    """`count` small RPMs built once with rpmbuild (tests.rpm_tools.build_rpm) and kept in
    `cache` for the next runs; the same arguments give the same bytes."""
    sys.path.insert(0, str(ROOT))
    from tests.rpm_tools import build_rpm

    folder = cache / f"{count}x{size}"
    done = folder / "complete"
    if done.exists():
        return sorted(folder.glob("*.rpm"))
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)

    def build(i: int) -> Path:
        data = hashlib.shake_256(f"payload {i}".encode()).digest(size)
        return build_rpm(folder, f"bench-small-{i:04d}", "1.0",
                         requires=[f"bench-small-{(i * 7) % count:04d}"] if i else [],
                         files={f"/usr/share/bench-small/{i:04d}.bin": data})

    print(f"building {count} RPMs with rpmbuild into {folder} (once) ...", file=sys.stderr,
          flush=True)
    with ThreadPoolExecutor(os.cpu_count() or 2) as pool:
        built = sorted(pool.map(build, range(count)))
    done.write_text("")
    return built


# -- the children -----------------------------------------------------------------------------

def _runtime(args):
    from pallet.runtime import Runtime
    from pallet.settings import Settings

    return Runtime.create(Settings(data_dir=args.child_dir, database_url=args.child_db))


def _units(runtime, repository_id: int) -> tuple[int, int]:
    from pallet.repositories.models import Repository
    from pallet.repositories.versions import latest_version

    with runtime.db.read() as session:
        version = latest_version(session, session.get(Repository, repository_id))
        return sum(c["present"] for c in version.counts.values()), version.number


@contextmanager
def profiled(path: str):
    """cProfile of the block into `path` (with --profile), else nothing."""
    if not path:
        yield
        return
    import cProfile
    profiler = cProfile.Profile()
    profiler.enable()
    try:
        yield
    finally:
        profiler.disable()
        profiler.dump_stats(path)


def child_sync(args) -> dict:
    """A Pallet sync: with --child-policy, first a fresh database, a remote and a repository
    (not timed); then the `remote.sync` task, timed."""
    from pallet.db.migrate import upgrade
    from pallet.remotes.models import Remote
    from pallet.repositories.models import Repository
    from pallet.repositories.service import create_repository
    from pallet.tasks.registry import lookup
    from pallet.tasks.worker import TaskContext

    runtime = _runtime(args)
    try:
        if args.child_policy:
            upgrade(runtime.db)
            with runtime.db.write() as session:
                remote = Remote(name=args.child_name, type="rpm", url=args.child_url,
                                policy=args.child_policy,
                                download_concurrency=args.concurrency, headers={})
                session.add(remote)
                create_repository(session, runtime.plugins, name=args.child_name, type="rpm")
        with runtime.db.read() as session:
            remote_id = session.query(Remote.id).filter_by(name=args.child_name).scalar()
            repository_id = (session.query(Repository.id).filter_by(name=args.child_name)
                             .scalar())
        task, sync = TaskContext(0), lookup("remote.sync")  # imports the task modules
        with profiled(args.child_profile):
            before = reset_peak()
            _, seconds = timed(sync, runtime, task,
                               repository_id=repository_id, remote_id=remote_id, mirror=None)
            peak = memory_mb("VmHWM")
        units, number = _units(runtime, repository_id)
        return {"seconds": seconds, "peak_mb": peak, "before_mb": before, "units": units, "version": number,
                "result": {k: v for k, v in (task.result or {}).items()
                           if isinstance(v, (int, str, bool))}}
    finally:
        runtime.close()


def child_publish(args) -> dict:
    """The `publication.create` task of the repository's newest version (an earlier
    round's publication deleted first)."""
    from sqlalchemy import select

    from pallet.publications import service
    from pallet.publications.models import Publication
    from pallet.repositories.models import Repository
    from pallet.tasks.registry import lookup
    from pallet.tasks.worker import TaskContext

    runtime = _runtime(args)
    try:
        with runtime.db.write() as session:  # an earlier round's publication (not timed)
            repository_id = session.query(Repository.id).filter_by(name="bench").scalar()
            for publication in session.scalars(select(Publication).where(
                    Publication.repository_id == repository_id)):
                service.delete_publication(session, publication)
        task, publish = TaskContext(0), lookup("publication.create")  # imports the task modules
        with profiled(args.child_profile):
            before, cpu = reset_peak(), time.process_time()
            _, seconds = timed(publish, runtime, task,
                               repository_id=repository_id, version=None, options=None)
            peak, cpu = memory_mb("VmHWM"), time.process_time() - cpu
        with runtime.db.read() as session:
            files = {path: sha256 for path, sha256, _ in service.metadata_files(
                session, [task.result["publication"]]).get(task.result["publication"], [])}
        primary = next((p for p in files if p.endswith("primary.xml.gz")), None)
        packages = None
        if primary:  # primary.xml states its package count first
            with runtime.storage.open(files[primary]) as raw, gzip.open(raw) as stream:
                head = stream.read(4096).decode()
            packages = int(head.split('packages="', 1)[1].split('"', 1)[0])
        return {"seconds": seconds, "cpu_seconds": cpu, "peak_mb": peak, "before_mb": before,
                "created": task.result["created"],
                "files": len(files), "packages": packages}
    finally:
        runtime.close()


def child_write(args) -> dict:
    """createrepo_c's floor for a publication: its own writers writing primary, filelists and
    other (gz) and filling repomd records, from Packages already in memory (read, not timed,
    from the served metadata)."""
    import createrepo_c as cr

    repodata = Path(args.child_dir) / "repodata"
    repomd = cr.Repomd(str(repodata / "repomd.xml"))
    paths = {r.type: str(repodata.parent / r.location_href) for r in repomd.records}
    packages = list(cr.PackageIterator(paths["primary"], paths["filelists"], paths["other"]))
    out = Path(tempfile.mkdtemp(prefix="pallet-bench-createrepo-"))
    try:
        before, cpu = reset_peak(), time.process_time()
        _, seconds = timed(write_repodata, out, packages)
        return {"seconds": seconds, "cpu_seconds": time.process_time() - cpu,
                "peak_mb": memory_mb("VmHWM"), "before_mb": before, "packages": len(packages)}
    finally:
        shutil.rmtree(out, ignore_errors=True)


def child_copy(args) -> dict:
    """The `repository.copy` task, dependencies solved, of the names in the file
    --child-names from repository `deps` into a new empty rpm repository (created first,
    not timed). Returns the names of the packages the new version holds."""
    from pallet.content.service import iter_fields
    from pallet.repositories.models import Repository
    from pallet.repositories.service import create_repository
    from pallet.repositories.versions import content_ids_query
    from pallet.tasks.registry import lookup
    from pallet.tasks.worker import TaskContext

    names = json.loads(Path(args.child_names).read_text())
    runtime = _runtime(args)
    try:
        with runtime.db.write() as session:
            source_id = session.query(Repository.id).filter_by(name="deps").scalar()
            taken = session.query(Repository.name).filter(
                Repository.name.like("deps-copy-%")).count()
            target = create_repository(session, runtime.plugins, name=f"deps-copy-{taken}",
                                       type="rpm")
            session.flush()
            target_id = target.id
        task, copy = TaskContext(0), lookup("repository.copy")
        match = [{"type": "rpm.package", "fields": {"name": name}} for name in names]
        with profiled(args.child_profile):
            before = reset_peak()
            _, seconds = timed(copy, runtime, task, repository_id=target_id,
                               source_id=source_id, match=match, dependencies=True)
            peak = memory_mb("VmHWM")
        with runtime.db.read() as session:
            target = session.get(Repository, target_id)
            copied = sorted(fields["name"] for _, _, fields in iter_fields(
                session, content_ids_query(target, task.result["version"])))
        result = task.result
        return {"seconds": seconds, "peak_mb": peak, "before_mb": before, "names": copied,
                "chosen": result["chosen"], "dependencies": result["dependencies"],
                "unresolved": result["unresolved_count"]}
    finally:
        runtime.close()


async def plain_download(repo_url: str, target: Path, concurrency: int) -> int:
    """repomd.xml, primary, then every package it lists to disk with sha256 checked."""
    import aiohttp
    import createrepo_c as cr

    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as session:
        async def get(relative: str) -> bytes:
            async with session.get(f"{repo_url}/{relative}") as response:
                response.raise_for_status()
                return await response.read()

        (target / "repomd.xml").write_bytes(await get("repodata/repomd.xml"))
        repomd = cr.Repomd(str(target / "repomd.xml"))
        href = next(r.location_href for r in repomd.records if r.type == "primary")
        (target / "primary.xml.gz").write_bytes(await get(href))
        listed: list[tuple[str, str]] = []
        cr.xml_parse_primary(str(target / "primary.xml.gz"),
                             pkgcb=lambda p: listed.append((p.location_href, p.pkgId)) or True,
                             do_files=False)
        queue: asyncio.Queue = asyncio.Queue()
        for item in listed:
            queue.put_nowait(item)
        total = 0

        async def worker() -> None:
            nonlocal total
            while not queue.empty():
                relative, sha256 = queue.get_nowait()
                total += await download_checked(session, f"{repo_url}/{relative}",
                                                target / relative, sha256)

        await asyncio.gather(*(worker() for _ in range(concurrency)))
        return total


def child_download(args) -> dict:
    target = Path(tempfile.mkdtemp(prefix="pallet-bench-download-"))
    try:
        before = reset_peak()
        size, seconds = timed(asyncio.run, plain_download(args.child_url, target,
                                                          args.concurrency))
        return {"seconds": seconds, "bytes": size, "peak_mb": memory_mb("VmHWM"),
                "before_mb": before}
    finally:
        shutil.rmtree(target, ignore_errors=True)


CHILDREN = {"sync": child_sync, "publish": child_publish, "write": child_write,
            "download": child_download, "copy": child_copy}


def run_child(kind: str, args, url: str = "", db_url: str = "", data_dir: Path | str = "",
              policy: str = "", profile: str = "", name: str = "bench",
              names: Path | str = "") -> dict:
    command = [sys.executable, __file__, "--child", kind, "--child-url", url,
               "--concurrency", str(args.concurrency), "--child-db", db_url,
               "--child-dir", str(data_dir), "--child-policy", policy,
               "--child-profile", profile, "--child-name", name,
               "--child-names", str(names)]
    try:
        done = subprocess.run(command, stdout=subprocess.PIPE, text=True,
                              timeout=args.step_timeout or None)
    except subprocess.TimeoutExpired:
        return {"timeout": True}
    if done.returncode:
        raise SystemExit(f"the {kind} child failed with exit code {done.returncode}")
    return json.loads(done.stdout.splitlines()[-1])


def dnf_makecache(installroot: Path, url: str) -> dict:
    """`dnf makecache` into `installroot` with a private configuration (tests.rpm_tools.Dnf),
    under /usr/bin/time for its peak RSS (wait4 of a small parent, so it is dnf's own)."""
    sys.path.insert(0, str(ROOT))
    from tests.rpm_tools import Dnf, run

    dnf = Dnf(installroot)
    dnf._repos({"bench": url})
    measured = installroot.with_name(installroot.name + "-time")
    result = run(["/usr/bin/time", "-f", "%M", "-o", measured,
                  "dnf", f"--installroot={dnf.installroot}",
                  f"--config={dnf.config / 'dnf.conf'}",
                  f"--setopt=reposdir={dnf.config / 'repos.d'}",
                  f"--setopt=varsdir={dnf.config / 'vars'}",
                  "--releasever=1", "--noplugins", "-y", "makecache"],
                 home_dir=dnf.config / "home")
    cached = sorted(p.name.split("-", 1)[-1] for p in
                    (installroot / "var/cache/dnf").rglob("repodata/*") if p.is_file())
    return {"seconds": result.seconds, "peak_mb": int(measured.read_text().split()[-1]) / 1024,
            "fetched": cached}


# -- the parent -------------------------------------------------------------------------------

def measure(args) -> dict:
    ensure_commands({"nginx": "nginx", "time": "time"})
    work = Path(tempfile.mkdtemp(prefix="pallet-bench-rpm-"))
    work.chmod(0o755)  # nginx's workers run unprivileged
    results: dict = {}
    try:
        served = work / "served"
        served.mkdir()
        if args.packages:
            print(f"writing yum metadata for {args.packages:,} packages (and the 1% "
                  "changed copy) ...", file=sys.stderr, flush=True)
            results["sizes"], results["setup_seconds"] = timed(make_metadata, work / "meta",
                                                               args.packages)
            (served / "big").mkdir()
            shutil.copytree(work / "meta" / "base" / "repodata", served / "big" / "repodata")
        if args.copy_packages:
            print(f"writing yum metadata for {args.copy_packages:,} packages whose "
                  "dependencies resolve ...", file=sys.stderr, flush=True)
            write_repodata(served / "deps", list(dependent_packages(args.copy_packages)))
        if args.rpms:
            sys.path.insert(0, str(ROOT))
            from tests.rpm_tools import make_repository

            rpms = small_rpms(args.rpm_cache, args.rpms, args.rpm_size)
            make_repository(served / "small", rpms)
        for path in served.rglob("*"):
            path.chmod(0o755 if path.is_dir() else 0o644)
        with nginx(served) as base_url:
            if args.packages:
                measure_big(args, work, served / "big", f"{base_url}/big", results)
            if args.copy_packages:
                measure_copy(args, work, f"{base_url}/deps", results)
            if args.rpms:
                measure_small(args, f"{base_url}/small", results)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return results


def _profile(args, name: str) -> str:
    if not args.profile:
        return ""
    Path(args.profile).mkdir(parents=True, exist_ok=True)
    return str(Path(args.profile).resolve() / f"{name}.prof")


def measure_big(args, work: Path, repo: Path, url: str, results: dict) -> None:
    from contextlib import ExitStack

    kinds = database_kinds(args)
    root = work / "dnf" / "root"
    say = lambda text: print(text, file=sys.stderr, flush=True)  # noqa: E731
    say("dnf makecache into a fresh installroot ...")
    results[("sync", "baseline")] = dnf_makecache(root, url)
    say("dnf makecache again, nothing changed ...")
    results[("resync-same", "baseline")] = dnf_makecache(root, url)
    with ExitStack() as stack:
        pallets = {kind: stack.enter_context(database(kind, args.postgres_url, parent=work))
                   for kind in kinds}
        for kind, (db_url, data_dir) in pallets.items():
            say(f"pallet on {kind}: on-demand sync ...")
            results[("sync", kind)] = run_child("sync", args, url, db_url, data_dir,
                                                policy="on_demand",
                                                profile=_profile(args, f"sync-{kind}"))
        synced = {kind: pallet for kind, pallet in pallets.items()
                  if not results[("sync", kind)].get("timeout")}
        runs: dict = {}
        for round in range(1, args.rounds + 1):  # baseline then each database, each round
            say(f"publish, round {round}: createrepo_c's writers over packages in memory ...")
            runs.setdefault("baseline", []).append(
                run_child("write", args, data_dir=work / "meta" / "base"))
            for kind, (db_url, data_dir) in synced.items():
                say(f"publish, round {round}: pallet on {kind} ...")
                runs.setdefault(kind, []).append(run_child(
                    "publish", args, url, db_url, data_dir,
                    profile=_profile(args, f"publish-{kind}-{round}")))
        for run, figures in runs.items():
            results[("publish", run)] = rounds_of(figures)
        for kind, (db_url, data_dir) in synced.items():
            say(f"pallet on {kind}: re-sync, nothing changed ...")
            results[("resync-same", kind)] = run_child(
                "sync", args, url, db_url, data_dir, profile=_profile(args, f"resync-same-{kind}"))
        # 1% of the names get a new version upstream (nginx serves the files as they are now)
        shutil.rmtree(repo / "repodata")
        shutil.copytree(work / "meta" / "changed" / "repodata", repo / "repodata")
        for path in (repo / "repodata").rglob("*"):
            path.chmod(0o644)
        (repo / "repodata").chmod(0o755)
        say("dnf makecache again, 1% changed ...")
        results[("resync-changed", "baseline")] = dnf_makecache(root, url)
        for kind, (db_url, data_dir) in pallets.items():
            if results[("sync", kind)].get("timeout"):
                continue
            say(f"pallet on {kind}: re-sync, 1% changed ...")
            results[("resync-changed", kind)] = run_child(
                "sync", args, url, db_url, data_dir,
                profile=_profile(args, f"resync-changed-{kind}"))


def rounds_of(figures: list[dict]) -> dict:
    """One step's runs: the median run's figures, with every run's time under "rounds"."""
    if any(f.get("timeout") for f in figures):
        return {"timeout": True}
    median = sorted(figures, key=lambda f: f["seconds"])[(len(figures) - 1) // 2]
    return {**median, "rounds": [f["seconds"] for f in figures],
            "cpu_rounds": [f.get("cpu_seconds") for f in figures]}


def measure_copy(args, work: Path, url: str, results: dict) -> None:
    """A copy of --copy-names names with their dependencies, by dnf (resolving the
    transaction from its cache) and by each Pallet (the `repository.copy` task)."""
    from contextlib import ExitStack

    say = lambda text: print(text, file=sys.stderr, flush=True)  # noqa: E731
    names = copied_names(args.copy_packages, args.copy_names)
    names_file = work / "copy-names.json"
    names_file.write_text(json.dumps(names))
    root = work / "dnf-copy" / "root"
    say("copy: dnf makecache of the repository to copy from (not timed) ...")
    dnf_makecache(root, url)
    with ExitStack() as stack:
        pallets = {}
        for kind in database_kinds(args):
            db_url, data_dir = stack.enter_context(database(kind, args.postgres_url,
                                                            parent=work))
            say(f"copy: pallet on {kind}, on-demand sync of the source (not timed) ...")
            synced = run_child("sync", args, url, db_url, data_dir, policy="on_demand",
                               name="deps")
            if synced.get("timeout") or synced["units"] != args.copy_packages:
                raise SystemExit(f"the copy's source did not sync on {kind}: {synced}")
            pallets[kind] = (db_url, data_dir)
        runs: dict = {}
        for round in range(1, args.rounds + 1):
            say(f"copy, round {round}: dnf -C install --assumeno ...")
            runs.setdefault("baseline", []).append(dnf_resolve(root, url, names))
            for kind, (db_url, data_dir) in pallets.items():
                say(f"copy, round {round}: pallet on {kind} ...")
                runs.setdefault(kind, []).append(run_child(
                    "copy", args, url, db_url, data_dir, names=names_file,
                    profile=_profile(args, f"copy-{kind}-{round}")))
        for run, figures in runs.items():
            results[("copy", run)] = rounds_of(figures)


def dnf_resolve(installroot: Path, url: str, names: list[str]) -> dict:
    """`dnf -C install --assumeno NAMES` on the installroot dnf_makecache filled: dnf
    resolves the transaction from its cache, prints it and stops. The names of the
    packages it would install are read from its table (the tokens before the repo id)."""
    sys.path.insert(0, str(ROOT))
    from tests.rpm_tools import Dnf, run

    dnf = Dnf(installroot)
    measured = installroot.with_name(installroot.name + "-time")
    result = run(["/usr/bin/time", "-f", "%M", "-o", measured,
                  "dnf", f"--installroot={dnf.installroot}",
                  f"--config={dnf.config / 'dnf.conf'}",
                  f"--setopt=reposdir={dnf.config / 'repos.d'}",
                  f"--setopt=varsdir={dnf.config / 'vars'}",
                  "--releasever=1", "--noplugins", "-C", "install", "--assumeno", *names],
                 home_dir=dnf.config / "home", check=False)
    tokens = result.stdout.split()
    chosen = sorted({tokens[i - 3] for i, token in enumerate(tokens) if token == "bench"})
    if not chosen:
        raise SystemExit(f"dnf resolved nothing:\n{result.stdout[-2000:]}\n{result.stderr}")
    return {"seconds": result.seconds, "names": chosen,
            "peak_mb": int(measured.read_text().split()[-1]) / 1024}


def measure_small(args, url: str, results: dict) -> None:
    print("small RPMs: plain download ...", file=sys.stderr, flush=True)
    results[("immediate", "baseline")] = run_child("download", args, url)
    for kind in database_kinds(args):
        with database(kind, args.postgres_url) as (db_url, data_dir):
            print(f"small RPMs: pallet on {kind} ...", file=sys.stderr, flush=True)
            results[("immediate", kind)] = run_child("sync", args, url, db_url, data_dir,
                                                     policy="immediate",
                                                     profile=_profile(args, f"immediate-{kind}"))


def _expected(step: str, args) -> tuple[int, int] | None:
    """(units, version number) a step must leave."""
    changed = len(range(0, args.packages, CHANGED_EVERY))
    return {"sync": (args.packages, 1), "resync-same": (args.packages, 1),
            "resync-changed": (args.packages + changed, 2),
            "immediate": (args.rpms, 1)}.get(step)


def _verdict(value: float, limit: float | None) -> str:
    if limit is None:
        return ""
    return "met" if value <= limit else "MISSED"


def report(results: dict, args) -> bool:
    ok = True
    n = f"{args.packages:,}"
    labels = {"sync": f"on-demand sync, {n} pkgs", "resync-same": "re-sync, nothing changed",
              "resync-changed": "re-sync, 1% changed", "publish": f"publish, {n} pkgs",
              "copy": f"copy {args.copy_names} + deps",
              "immediate": f"immediate sync, {args.rpms} RPMs"}
    baselines = {"sync": "dnf makecache", "resync-same": "dnf makecache",
                 "resync-changed": "dnf makecache", "publish": "createrepo_c",
                 "copy": "dnf install -C", "immediate": "aiohttp"}
    if "sizes" in results:
        sizes = results["sizes"]
        print(f"\nSetup: yum metadata for {n} packages (and its 1% changed copy) written in "
              f"{results['setup_seconds']:.1f} s; gz sizes: "
              + ", ".join(f"{kind} {size / MiB:.1f} MiB" for kind, size in sizes.items()))
    fetched = results.get(("sync", "baseline"), {}).get("fetched")
    if fetched:
        print(f"dnf makecache fetched: {', '.join(fetched)}")
    print(f"\n{'step':<29}{'run':<18}{'time':>8}{'x baseline':>11}{'target':>16}"
          f"{'RSS before':>11}{'peak RSS':>9}{'target':>18}")
    for step in labels:
        if (step, "baseline") not in results:
            continue
        baseline = results[(step, "baseline")]
        ratio_limit, seconds_limit, rss_limit = TARGETS[step]
        label = labels[step]
        runs = ["baseline", *[key[1] for key in results if isinstance(key, tuple) and key[0] == step and key[1] != "baseline"]]
        for run in runs:
            figures = results[(step, run)]
            name = baselines[step] if run == "baseline" else f"pallet {run}"
            if figures.get("timeout"):
                print(f"{label:<29}{name:<18}{'TIMEOUT':>8}")
                ok, label = False, ""
                continue
            seconds = figures["seconds"]
            ratio = seconds / baseline["seconds"]
            target = rss = note = ""
            if run != "baseline":
                if ratio_limit is not None:
                    target = f"<= {ratio_limit:g}x {_verdict(ratio, ratio_limit)}"
                elif seconds_limit is not None:
                    target = f"<= {seconds_limit:g} s {_verdict(seconds, seconds_limit)}"
                if rss_limit is not None:
                    rss = f"<= {rss_limit} MB {_verdict(figures['peak_mb'], rss_limit)}"
                expected = _expected(step, args)
                if expected and (figures["units"], figures["version"]) != expected:
                    note, ok = (f"  *** {figures['units']} units in version "
                                f"{figures['version']}, expected {expected[0]} in "
                                f"{expected[1]} ***"), False
                if step == "publish" and figures.get("packages") != args.packages:
                    note, ok = f"  *** primary.xml lists {figures.get('packages')} ***", False
            before = figures.get("before_mb")
            before = f"{before:.0f}MB" if before is not None else "-"
            print(f"{label:<29}{name:<18}{seconds:>7.2f}s{ratio:>10.2f}x{target:>16}"
                  f"{before:>11}{figures['peak_mb']:>7.0f}MB  {rss:>16}{note}")
            label = ""
        if "rounds" in baseline:
            ok = report_rounds(step, results, runs) and ok
    if ("copy", "baseline") in results:
        ok = report_copy(results, args) and ok
    print("\nBaselines, same run: dnf makecache into a fresh installroot (then again on its "
          "cache,\nnothing changed; then after the change); createrepo_c's Python writers "
          "writing\nprimary/filelists/other.xml.gz and repomd records from Packages already in "
          "memory;\ndnf -C install --assumeno of the copied names, resolving the "
          "transaction from its cache;\naiohttp with the same concurrency reading repomd, "
          "primary and every RPM (sha256 checked).\nPallet: the task from start to its "
          "committed version (publication). Publish and copy run\nin rounds (baseline, then "
          "each database); their rows show the median run. Peak RSS:\nVmHWM of each child "
          "reset before the step; dnf's from /usr/bin/time.")
    return ok


def report_rounds(step: str, results: dict, runs: list[str]) -> bool:
    """Under a step run in rounds: each round's time of every run, and its ratio to the
    baseline of the same round (their spread shows how noisy the machine was)."""
    baseline = results[(step, "baseline")]["rounds"]
    for run in runs[1:]:
        figures = results[(step, run)]
        if figures.get("timeout"):
            continue
        each = ", ".join(f"{mine:.2f}/{theirs:.2f}={mine / theirs:.2f}x"
                         for mine, theirs in zip(figures["rounds"], baseline))
        print(f"{'':<29}  each round, pallet {run} / baseline: {each}")
        cpu = list(zip(figures["cpu_rounds"], results[(step, "baseline")]["cpu_rounds"]))
        if cpu and None not in cpu[0]:
            each = ", ".join(f"{mine:.2f}/{theirs:.2f}={mine / theirs:.2f}x"
                             for mine, theirs in cpu)
            print(f"{'':<29}  CPU of each round (this process only): {each}")
    return True


def report_copy(results: dict, args) -> bool:
    """How many packages dnf's transaction and each Pallet's copy hold, and which differ."""
    dnf = set(results[("copy", "baseline")]["names"])
    print(f"\nCopy of {args.copy_names} names from {args.copy_packages:,} packages whose "
          f"dependencies resolve: dnf's transaction installs {len(dnf)} packages")
    ok = True
    for key, figures in results.items():
        if key[0] != "copy" or key[1] == "baseline" or figures.get("timeout"):
            continue
        run = key[1]
        mine = set(figures["names"])
        line = (f"  pallet {run}: {len(mine)} packages ({figures['chosen']} chosen, "
                f"{figures['dependencies']} dependencies, {figures['unresolved']} "
                f"unresolved)")
        if mine == dnf:
            line += ", the same packages as dnf"
        else:
            line += (f"; only Pallet: {len(mine - dnf)} {sorted(mine - dnf)[:5]}, only dnf: "
                     f"{len(dnf - mine)} {sorted(dnf - mine)[:5]}")
        if figures["unresolved"]:
            ok = False
        print(line)
    return ok


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--packages", type=int, default=50_000,
                        help="packages in the generated yum metadata (0: skip those steps)")
    parser.add_argument("--rpms", type=int, default=200,
                        help="real RPMs for the immediate sync (0: skip it)")
    parser.add_argument("--rpm-size", type=int, default=32 * 1024,
                        help="bytes of payload in each of those RPMs")
    parser.add_argument("--rpm-cache", type=Path, default=DEFAULT_RPM_CACHE,
                        help="where the built RPMs are kept between runs")
    parser.add_argument("--copy-packages", type=int, default=20_000,
                        help="packages in the repository the copy step copies from (0: skip)")
    parser.add_argument("--copy-names", type=int, default=200,
                        help="package names the copy step asks for")
    parser.add_argument("--rounds", type=int, default=3,
                        help="runs of the publish and copy steps, each beside its baseline; "
                             "the median counts")
    parser.add_argument("--concurrency", type=int, default=10)
    parser.add_argument("--database", choices=("sqlite", "postgresql", "both"), default="both")
    parser.add_argument("--postgres-url", default=DEFAULT_POSTGRES_URL)
    parser.add_argument("--step-timeout", type=float, default=900,
                        help="stop a Pallet step after S seconds (0: no limit)")
    parser.add_argument("--profile", metavar="DIR",
                        help="write a cProfile of each Pallet step to DIR (slows them)")
    for hidden in ("--child", "--child-url", "--child-db", "--child-dir", "--child-policy",
                   "--child-profile", "--child-names"):
        parser.add_argument(hidden, default="", help=argparse.SUPPRESS)
    parser.add_argument("--child-name", default="bench", help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.child:
        print(json.dumps(CHILDREN[args.child](args)))
        return 0
    return 0 if report(measure(args), args) else 1


if __name__ == "__main__":
    sys.exit(main())
