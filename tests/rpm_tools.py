"""Real RPM tooling for tests: build RPMs, make yum repositories, install them with dnf.

    rpm_tools.require("rpmbuild", "createrepo_c")      # skip (or fail in CI) when missing
    b = build_rpm(tmp_path / "rpms", "b", "1.0")
    a = build_rpm(tmp_path / "rpms", "a", "1.0", requires=["b >= 1.0"],
                  files={"/usr/share/a/README": b"a\\n"})
    make_repository(tmp_path / "repo", [a, b],
                    updateinfo_xml=updateinfo([{"id": "PALLET-1", "packages": [a]}]))
    dnf = Dnf(tmp_path / "root")                      # an installroot and its own dnf config
    dnf.install(server.url, "a")                      # also dnf.run(url, "updateinfo", "list")
    dnf.installed()                                   # {"a-0:1.0-1.noarch", "b-0:1.0-1.noarch"}

Nothing touches the host: rpmbuild, createrepo_c, dnf and rpm run with HOME set to a folder
of their own (a temporary one, or the Dnf's), whose `.rpmmacros` puts the RPM database at
/var/lib/rpm, inside the installroot (Debian's rpm otherwise keeps it in ~/.rpmdb); dnf runs
with --installroot, a dnf.conf, repos.d and vars of its own, and no plugins. Every command has
a timeout and its whole process group is killed when it runs out; a failure raises ToolError
with the command line and its output.

A missing tool skips the test, or fails it when PALLET_TEST_REQUIRE_TOOLS=1 (as `.ci/run`
sets, having installed the Debian packages rpm, createrepo-c and dnf).
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import tempfile
import textwrap
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Mapping, Sequence
from xml.sax.saxutils import escape, quoteattr

import pytest

TIMEOUT = 120.0
SOURCE_DATE_EPOCH = 1704067200  # 2024-01-01: build times and file times of every RPM
MACROS = "%_dbpath /var/lib/rpm\n"
NEVRA_FORMAT = "%{NAME}-%|EPOCH?{%{EPOCH}}:{0}|:%{VERSION}-%{RELEASE}.%{ARCH}\\n"


# -- tools and processes ----------------------------------------------------------------------

def require(*commands: str) -> None:
    """Skip the test when one of `commands` is not on PATH; with PALLET_TEST_REQUIRE_TOOLS=1
    (CI), fail it instead."""
    missing = [command for command in commands if shutil.which(command) is None]
    if not missing:
        return
    reason = (f"not installed: {', '.join(missing)} (Debian packages rpm, createrepo-c, dnf;"
              f" .ci/run installs them)")
    if os.environ.get("PALLET_TEST_REQUIRE_TOOLS") == "1":
        pytest.fail(f"PALLET_TEST_REQUIRE_TOOLS=1 and {reason}", pytrace=False)
    pytest.skip(reason)


class ToolError(AssertionError):
    """A command failed; the message holds the command line, its status and its output."""


@dataclass(frozen=True)
class Result:
    args: list[str]
    returncode: int
    stdout: str
    stderr: str
    seconds: float

    def describe(self) -> str:
        return (f"$ {' '.join(self.args)}\n(exit status {self.returncode},"
                f" {self.seconds:.2f} s)\n--- stdout\n{self.stdout}--- stderr\n{self.stderr}")


def home(directory: Path) -> Path:
    """A HOME for the RPM tools: `directory`, with the .rpmmacros this module needs."""
    directory.mkdir(parents=True, exist_ok=True)
    macros = directory / ".rpmmacros"
    if not macros.exists():
        macros.write_text(MACROS)
    return directory


def run(args: Sequence[str], *, home_dir: Path, cwd: Path | None = None,
        timeout: float = TIMEOUT, check: bool = True) -> Result:
    """Run `args` with HOME=`home_dir` in a session of its own; kill the session after
    `timeout` seconds. With `check`, a failure or a timeout raises ToolError."""
    assert timeout <= TIMEOUT, timeout
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("PYTHON") and k not in ("VIRTUAL_ENV", "RPM_CONFIGDIR")}
    env.update(HOME=str(home(home_dir)), LC_ALL="C.UTF-8", LANG="C.UTF-8",
               SOURCE_DATE_EPOCH=str(SOURCE_DATE_EPOCH), TZ="UTC")
    args = [str(a) for a in args]
    started = time.monotonic()
    process = subprocess.Popen(args, cwd=cwd, env=env, stdin=subprocess.DEVNULL,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               start_new_session=True)
    try:
        stdout, stderr = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        stdout, stderr = process.communicate()
        result = Result(args, -9, stdout, stderr, time.monotonic() - started)
        raise ToolError(f"timed out after {timeout} s\n{result.describe()}") from None
    result = Result(args, process.returncode, stdout, stderr, time.monotonic() - started)
    if check and result.returncode != 0:
        raise ToolError(result.describe())
    return result


# -- building RPMs ----------------------------------------------------------------------------

SPEC_PREAMBLE = """\
%global __os_install_post %{nil}
%global debug_package %{nil}
%global _build_id_links none
%global _binary_payload w2.gzdio
%global _source_payload w2.gzdio
%global source_date_epoch_from_changelog 0
%global use_source_date_epoch_as_buildtime 1
%global clamp_mtime_to_source_date_epoch 1
%global _buildhost pallet-test
"""


def _spec_path(path: str) -> str:
    if not path.startswith("/"):
        raise ValueError(f"an RPM's file path must be absolute: {path!r}")
    return '"' + path.replace("%", "%%") + '"'


def _spec(name: str, version: str, release: str, *, arch: str, requires: Iterable[str],
          provides: Iterable[str], files: Mapping[str, bytes], changelog: str, summary: str,
          epoch: int | None, license: str) -> str:
    lines = [SPEC_PREAMBLE, f"Name: {name}", f"Version: {version}", f"Release: {release}"]
    if epoch is not None:
        lines.append(f"Epoch: {epoch}")
    lines += [f"Summary: {summary}", f"License: {license}", "AutoReqProv: no"]
    if arch == "noarch":
        lines.append("BuildArch: noarch")
    lines += [f"Requires: {r}" for r in requires]
    lines += [f"Provides: {p}" for p in provides]
    lines += ["", "%description", summary, "", "%install", "mkdir -p %{buildroot}",
              "cp -a %{_sourcedir}/tree/. %{buildroot}/", "", "%files"]
    lines += [_spec_path(path) for path in files]
    stamp = time.strftime("%a %b %d %Y", time.gmtime(SOURCE_DATE_EPOCH))
    evr = f"{epoch}:{version}-{release}" if epoch is not None else f"{version}-{release}"
    lines += ["", "%changelog", f"* {stamp} Pallet Tests <tests@pallet.invalid> - {evr}"]
    lines += [line if line.startswith("-") else f"- {line}"
              for line in changelog.strip().splitlines()]
    return "\n".join(lines) + "\n"


def build_rpm(workdir: Path, name: str, version: str, release: str = "1", *,
              arch: str = "noarch", requires: Iterable[str] = (), provides: Iterable[str] = (),
              files: Mapping[str, bytes] | None = None, changelog: str | None = None,
              summary: str | None = None, epoch: int | None = None, license: str = "MIT",
              source: bool = False) -> Path:
    """Build NAME-VERSION-RELEASE.ARCH.rpm (with `source`, NAME-VERSION-RELEASE.src.rpm)
    into `workdir` and return its path. `files` maps absolute paths to their bytes (by
    default one file, /usr/share/NAME/VERSION-RELEASE); `requires` and `provides` are spec
    lines such as "b >= 1.0". No signature, no debuginfo, no automatic dependencies; the
    same arguments give the same bytes. An `arch` other than noarch is built with
    --target (the files are data, so any arch builds)."""
    require("rpmbuild")
    workdir = Path(workdir)
    if files is None:
        files = {f"/usr/share/{name}/{version}-{release}": f"{name} {version}\n".encode()}
    summary = summary or f"Pallet test package {name}"
    changelog = changelog or f"{name} {version}-{release} for Pallet's tests"
    with tempfile.TemporaryDirectory(prefix="pallet-rpmbuild-") as scratch:
        return _build(workdir, Path(scratch), name, version, release, arch=arch,
                      requires=requires, provides=provides, files=files,
                      changelog=changelog, summary=summary, epoch=epoch, license=license,
                      source=source)


def _build(workdir: Path, top: Path, name: str, version: str, release: str, *, arch: str,
           files: Mapping[str, bytes], source: bool, **fields) -> Path:
    tree = top / "SOURCES" / "tree"
    tree.mkdir(parents=True)
    for path, data in files.items():
        target = tree / path.lstrip("/")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
    (top / "tmp").mkdir()
    spec = top / f"{name}.spec"
    spec.write_text(_spec(name, version, release, arch=arch, files=files, **fields))
    args = ["rpmbuild", "-bs" if source else "-bb", "--nodeps", "--quiet",
            "--define", f"_topdir {top}", "--define", f"_tmppath {top / 'tmp'}"]
    if arch != "noarch" and not source:
        args += ["--target", arch]
    run([*args, spec], home_dir=top / "home")
    built = sorted((top / ("SRPMS" if source else "RPMS")).rglob("*.rpm"))
    assert len(built) == 1, built
    workdir.mkdir(parents=True, exist_ok=True)
    return Path(shutil.move(built[0], workdir / built[0].name))


def build_srpm(workdir: Path, name: str, version: str, release: str = "1", **options) -> Path:
    """build_rpm(..., source=True): NAME-VERSION-RELEASE.src.rpm."""
    return build_rpm(workdir, name, version, release, source=True, **options)


@dataclass(frozen=True)
class Package:
    """What `rpm -qp` says of an RPM file."""

    name: str
    epoch: str
    version: str
    release: str
    arch: str
    sourcerpm: str
    filename: str

    @property
    def nevra(self) -> str:
        return f"{self.name}-{self.epoch}:{self.version}-{self.release}.{self.arch}"


def package(path: Path) -> Package:
    """The name, epoch ("0" when none), version, release, arch and source RPM of `path`."""
    require("rpm")
    path = Path(path)
    fields = "%{NAME}\t%|EPOCH?{%{EPOCH}}:{0}|\t%{VERSION}\t%{RELEASE}\t%{ARCH}\t%{SOURCERPM}"
    with tempfile.TemporaryDirectory(prefix="pallet-rpm-") as scratch:
        out = run(["rpm", "-qp", "--nosignature", "--nodigest", "--qf", fields, path],
                  home_dir=Path(scratch)).stdout
    name, epoch, version, release, arch, sourcerpm = out.split("\t")
    if sourcerpm == "(none)":  # a source RPM
        sourcerpm, arch = "", "src"
    return Package(name, epoch, version, release, arch, sourcerpm, path.name)


# -- repositories -----------------------------------------------------------------------------

# What createrepo_c may be asked for. Debian 12's createrepo_c 0.17 refuses zstd ("Unknown/
# Unsupported compression type"); newer ones take it.
COMPRESSIONS = ("gz", "xz", "bz2", "zstd")


def make_repository(root: Path, rpms: Iterable[Path], *, updateinfo_xml: str | None = None,
                    comps_xml: str | None = None, modules_yaml: str | None = None,
                    compress: str = "gz", database: bool = False,
                    extra_args: Sequence[str] = ()) -> Path:
    """A yum repository at `root`: the RPMs under root/Packages/<first letter>/ and repodata
    by createrepo_c (every file compressed with `compress`; sqlite databases only with
    `database`), then updateinfo, comps (as "group") and modules added by modifyrepo_c.
    Returns `root`. Run it again on the same root to make the repository anew."""
    require("createrepo_c", "modifyrepo_c")
    if compress not in COMPRESSIONS:
        raise ValueError(f"compress is one of {COMPRESSIONS}, not {compress!r}")
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    shutil.rmtree(root / "repodata", ignore_errors=True)
    for rpm in rpms:
        rpm = Path(rpm)
        folder = root / "Packages" / rpm.name[0].lower()
        folder.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(rpm, folder / rpm.name)
    extras = [("updateinfo", "updateinfo.xml", updateinfo_xml),
              ("group", "comps.xml", comps_xml),
              ("modules", "modules.yaml", modules_yaml)]
    with tempfile.TemporaryDirectory(prefix="pallet-createrepo-") as scratch:
        staging = Path(scratch)
        run(["createrepo_c", "--quiet", f"--general-compress-type={compress}",
             "--database" if database else "--no-database", *extra_args, root],
            home_dir=staging)
        for mdtype, filename, text in extras:
            if text is None:
                continue
            file = staging / filename
            file.write_text(text)
            run(["modifyrepo_c", f"--mdtype={mdtype}", f"--compress-type={compress}", file,
                 root / "repodata"], home_dir=staging)
    return root


def add_metadata(root: Path, filename: str, data: bytes, *, mdtype: str,
                 compress: str | None = "gz", checksum: str = "sha256") -> Path:
    """Add a file to the repository at `root` under a repomd record of type `mdtype`, as
    modifyrepo_c adds one (`productid`, say), announced by `checksum` (sha256, sha512,
    sha1, ...); `compress=None` keeps it uncompressed. Returns the file's path under
    root/repodata/ (named by modifyrepo_c)."""
    require("modifyrepo_c")
    with tempfile.TemporaryDirectory(prefix="pallet-modifyrepo-") as scratch:
        file = Path(scratch) / filename
        file.write_bytes(data)
        compression = [f"--compress-type={compress}"] if compress else ["--no-compress"]
        run(["modifyrepo_c", f"--mdtype={mdtype}", f"--checksum={checksum}", *compression,
             file, Path(root) / "repodata"], home_dir=Path(scratch) / "home")
    repodata = Path(root) / "repodata"
    record = re.search(rf'<data type="{re.escape(mdtype)}">.*?<location href="([^"]+)"',
                       (repodata / "repomd.xml").read_text(), re.S)
    assert record is not None, f"modifyrepo_c added no {mdtype} record"
    return Path(root) / record[1]


def _packages(packages: Iterable) -> list[Package]:
    """Package objects from RPM paths, Package objects, or NEVRA strings."""
    result = []
    for item in packages:
        if isinstance(item, Package):
            result.append(item)
        elif isinstance(item, Path) or str(item).endswith(".rpm"):
            result.append(package(Path(item)))
        else:
            result.append(parse_nevra(str(item)))
    return result


def parse_nevra(nevra: str, filename: str | None = None) -> Package:
    """'name-[epoch:]version-release.arch' as a Package (filename: name-version-release.arch.rpm)."""
    match = re.fullmatch(r"(.+)-(?:(\d+):)?([^-]+)-([^-]+)\.([^.]+)", nevra)
    if match is None:
        raise ValueError(f"not a NEVRA: {nevra!r}")
    name, epoch, version, release, arch = match.groups()
    filename = filename or f"{name}-{version}-{release}.{arch}.rpm"
    return Package(name, epoch or "0", version, release, arch,
                   f"{name}-{version}-{release}.src.rpm", filename)


def updateinfo(advisories: Iterable[Mapping]) -> str:
    """An updateinfo.xml. Each advisory: id, and optionally type ("security", "bugfix",
    "enhancement"; default "bugfix"), severity, title, issued ("YYYY-MM-DD HH:MM:SS"),
    description, and packages: RPM paths, Package objects or NEVRA strings."""
    updates = []
    for advisory in advisories:
        kind = advisory.get("type", "bugfix")
        title = advisory.get("title", f"Update {advisory['id']}")
        issued = advisory.get("issued", "2024-01-01 00:00:00")
        packages = "".join(
            f"        <package name={quoteattr(p.name)} epoch={quoteattr(p.epoch)}"
            f" version={quoteattr(p.version)} release={quoteattr(p.release)}"
            f" arch={quoteattr(p.arch)} src={quoteattr(p.sourcerpm)}>\n"
            f"          <filename>{escape(p.filename)}</filename>\n"
            f"        </package>\n"
            for p in _packages(advisory.get("packages", ())))
        updates.append(
            f'  <update from="tests@pallet.invalid" status="final" type={quoteattr(kind)}'
            f' version="1">\n'
            f"    <id>{escape(advisory['id'])}</id>\n"
            f"    <title>{escape(title)}</title>\n"
            f"    <severity>{escape(advisory.get('severity', 'None'))}</severity>\n"
            f"    <release>Pallet tests</release>\n"
            f"    <issued date={quoteattr(issued)}/>\n"
            f"    <updated date={quoteattr(advisory.get('updated', issued))}/>\n"
            f"    <description>{escape(advisory.get('description', title))}</description>\n"
            f"    <references/>\n"
            f"    <pkglist>\n"
            f'      <collection short="pallet-tests">\n'
            f"        <name>Pallet tests</name>\n"
            f"{packages}"
            f"      </collection>\n"
            f"    </pkglist>\n"
            f"  </update>\n")
    return f'<?xml version="1.0" encoding="UTF-8"?>\n<updates>\n{"".join(updates)}</updates>\n'


def comps(group_id: str, packages: Iterable[str], *, name: str | None = None) -> str:
    """A comps.xml with one user-visible group whose packages are all mandatory."""
    requirements = "".join(f'      <packagereq type="mandatory">{escape(p)}</packagereq>\n'
                           for p in packages)
    return (f'<?xml version="1.0" encoding="UTF-8"?>\n'
            f'<!DOCTYPE comps PUBLIC "-//Red Hat, Inc.//DTD Comps info//EN" "comps.dtd">\n'
            f"<comps>\n"
            f"  <group>\n"
            f"    <id>{escape(group_id)}</id>\n"
            f"    <name>{escape(name or group_id)}</name>\n"
            f"    <description>Pallet test group {escape(group_id)}</description>\n"
            f"    <default>false</default>\n"
            f"    <uservisible>true</uservisible>\n"
            f"    <packagelist>\n{requirements}    </packagelist>\n"
            f"  </group>\n"
            f"</comps>\n")


def modules(name: str, stream: str, packages: Iterable, *, profile: str = "default",
            arch: str | None = None, version: int = 20240101000000,
            context: str = "c0ffee42", default: bool = True) -> str:
    """A modules.yaml: one modulemd v2 stream whose artifacts are `packages` (RPM paths,
    Package objects or NEVRA strings) and whose `profile` installs them all, plus (with
    `default`) modulemd-defaults making it the module's default stream and profile. The
    module's arch is the machine's (`basearch()`) unless given."""
    packages = _packages(packages)
    arch = arch or basearch()
    names = sorted({p.name for p in packages})
    return textwrap.dedent(f"""\
        ---
        document: modulemd
        version: 2
        data:
          name: {name}
          stream: "{stream}"
          version: {version}
          context: {context}
          arch: {arch}
          summary: Pallet test module {name}
          description: Pallet test module {name}, stream {stream}
          license:
            module:
            - MIT
          profiles:
            {profile}:
              rpms: [{", ".join(names)}]
          api:
            rpms: [{", ".join(names)}]
          artifacts:
            rpms: [{", ".join(p.nevra for p in packages)}]
        ...
        """) + (textwrap.dedent(f"""\
        ---
        document: modulemd-defaults
        version: 1
        data:
          module: {name}
          stream: "{stream}"
          profiles:
            "{stream}": [{profile}]
        ...
        """) if default else "")


def basearch() -> str:
    """The machine's architecture as rpm names it (x86_64 here; aarch64 on ARM)."""
    require("rpm")
    with tempfile.TemporaryDirectory(prefix="pallet-rpm-") as scratch:
        return run(["rpm", "--eval", "%{_arch}"], home_dir=Path(scratch)).stdout.strip()


# -- dnf --------------------------------------------------------------------------------------

DNF_CONF = """\
[main]
gpgcheck=0
repo_gpgcheck=0
localpkg_gpgcheck=0
best=True
skip_if_unavailable=False
install_weak_deps=False
keepcache=False
metadata_expire=0
zchunk=False
plugins=0
module_platform_id=platform:pallet
"""


class Dnf:
    """dnf on an installroot, with a configuration of its own in `<installroot>-dnf/`
    (dnf.conf, repos.d, vars, HOME). dnf keeps its metadata cache, logs and history inside
    the installroot, as it always does with --installroot (var/cache/dnf, var/log/dnf*.log,
    var/lib/dnf); the RPM database is <installroot>/var/lib/rpm."""

    def __init__(self, installroot: Path) -> None:
        self.installroot = Path(installroot)
        self.config = self.installroot.with_name(self.installroot.name + "-dnf")
        self.installroot.mkdir(parents=True, exist_ok=True)
        for folder in ("repos.d", "vars"):
            (self.config / folder).mkdir(parents=True, exist_ok=True)
        (self.config / "dnf.conf").write_text(DNF_CONF)
        self.last: Result | None = None

    def _repos(self, repo_urls: str | Sequence[str] | Mapping[str, str]) -> list[str]:
        """Write repos.d/pallet-tests.repo for `repo_urls` (one URL, several, or {id: url});
        return the repository ids."""
        if isinstance(repo_urls, str):
            repo_urls = [repo_urls]
        if not isinstance(repo_urls, Mapping):
            repo_urls = {f"pallet-test-{i}": url for i, url in enumerate(repo_urls)}
        text = "".join(f"[{repo_id}]\nname={repo_id}\nbaseurl={url}\nenabled=1\ngpgcheck=0\n\n"
                       for repo_id, url in repo_urls.items())
        (self.config / "repos.d" / "pallet-tests.repo").write_text(text)
        return list(repo_urls)

    def run(self, repo_urls: str | Sequence[str] | Mapping[str, str], *args: str,
            check: bool = True, timeout: float = TIMEOUT) -> Result:
        """`dnf ARGS` on the installroot with only `repo_urls` as repositories."""
        require("dnf")
        self._repos(repo_urls)
        self.last = run(["dnf", f"--installroot={self.installroot}",
                         f"--config={self.config / 'dnf.conf'}",
                         f"--setopt=reposdir={self.config / 'repos.d'}",
                         f"--setopt=varsdir={self.config / 'vars'}",
                         "--releasever=1", "--nogpgcheck", "--noplugins", "-y", *args],
                        home_dir=self.config / "home", check=check, timeout=timeout)
        return self.last

    def install(self, repo_urls: str | Sequence[str] | Mapping[str, str], *packages: str,
                extra_args: Sequence[str] = ()) -> Result:
        return self.run(repo_urls, *extra_args, "install", *packages)

    def installed(self) -> set[str]:
        """The NEVRAs (name-epoch:version-release.arch) the installroot's RPM database holds."""
        require("rpm")
        out = run(["rpm", f"--root={self.installroot}", "-qa", "--qf", NEVRA_FORMAT],
                  home_dir=self.config / "home").stdout
        return {line for line in out.splitlines() if not line.startswith("gpg-pubkey-")}


def dnf_run(installroot: Path, repo_url, *args: str, check: bool = True) -> Result:
    return Dnf(installroot).run(repo_url, *args, check=check)


def dnf_install(installroot: Path, repo_url, *packages: str,
                extra_args: Sequence[str] = ()) -> Result:
    return Dnf(installroot).install(repo_url, *packages, extra_args=extra_args)


def installed(installroot: Path) -> set[str]:
    return Dnf(installroot).installed()


__all__ = ["COMPRESSIONS", "Dnf", "Package", "Result", "ToolError", "add_metadata",
           "basearch", "build_rpm", "build_srpm", "comps", "dnf_install", "dnf_run",
           "installed", "make_repository", "modules", "package", "parse_nevra", "require",
           "run", "updateinfo"]
