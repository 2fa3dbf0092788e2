"""depsolve.closure: which packages a copy needs, solved by libsolv over plain fields."""

from __future__ import annotations

import hashlib
import re
import time

import pytest

from pallet.plugins.rpm import package
from pallet.plugins.rpm.depsolve import Solution, closure
from tests import rpm_tools

_DEP = re.compile(r"(\S+)(?:\s*(<=|>=|=|<|>)\s*(?:(\d+):)?([^-\s]+)(?:-(\S+))?)?")
_FLAGS = {"=": "EQ", "<": "LT", ">": "GT", "<=": "LE", ">=": "GE"}


def dep(text: str) -> tuple:
    """"b >= 1:2.0-3" as createrepo_c's (name, flags, epoch, version, release, pre)."""
    if text.startswith("("):
        return (text, None, None, None, None, False)
    name, op, epoch, version, release = _DEP.fullmatch(text).groups()
    if op is None:
        return (name, None, None, None, None, False)
    return (name, _FLAGS[op], epoch or "0", version, release, False)


def rpm(name: str, version: str = "1.0", release: str = "1", arch: str = "noarch", *,
        epoch: str = "0", requires=(), provides=(), conflicts=(), obsoletes=(),
        files=()) -> dict:
    """A package's fields, shaped as package.Package's (with the self-provide rpm adds)."""
    evr = (epoch, version, release)
    return {"name": name, "epoch": epoch, "version": version, "release": release, "arch": arch,
            "pkgid": hashlib.sha256(f"{name}-{epoch}:{version}-{release}.{arch}".encode())
            .hexdigest(),
            "requires": [dep(r) for r in requires],
            "provides": [(name, "EQ", *evr, False)] + [dep(p) for p in provides],
            "conflicts": [dep(c) for c in conflicts],
            "obsoletes": [dep(o) for o in obsoletes],
            "files": [(None, path.rsplit("/", 1)[0] + "/", path.rsplit("/", 1)[1])
                      for path in files]}


def numbered(*packages: dict) -> dict[str, tuple[int, dict]]:
    """{"name-version-release.arch": (content id, fields)}, ids from 1 in order."""
    return {f"{p['name']}-{p['version']}-{p['release']}.{p['arch']}": (i, p)
            for i, p in enumerate(packages, 1)}


def solve(available: dict[str, tuple[int, dict]], *wanted: str,
          target: dict[str, tuple[int, dict]] | None = None, **options) -> tuple[set, tuple]:
    """closure over `available`, wanting the packages named; the names chosen back, and the
    problems."""
    names = {content_id: name for name, (content_id, _) in available.items()}
    solution = closure(available.values(), [available[w][0] for w in wanted],
                       target=(target or {}).values(), **options)
    assert isinstance(solution, Solution)
    return {names[i] for i in solution.content_ids}, solution.problems


def test_a_chain_of_requirements_is_followed_to_its_end():
    available = numbered(rpm("a", requires=["b"]), rpm("b", requires=["c"]), rpm("c"),
                         rpm("unrelated"))
    assert solve(available, "a-1.0-1.noarch") == (
        {"a-1.0-1.noarch", "b-1.0-1.noarch", "c-1.0-1.noarch"}, ())


def test_a_virtual_provide_is_satisfied_by_one_provider_whatever_the_order():
    packages = [rpm("site", requires=["webserver"]),
                rpm("nginx", provides=["webserver"]), rpm("httpd", provides=["webserver"])]
    chosen = [solve(numbered(*order), "site-1.0-1.noarch")
              for order in (packages, packages[::-1], [packages[0], packages[2], packages[1]])]
    assert chosen[0] == chosen[1] == chosen[2]
    names, problems = chosen[0]
    assert problems == ()
    assert names == {"site-1.0-1.noarch", "httpd-1.0-1.noarch"}  # libsolv: the first by name


def test_a_versioned_requirement_takes_the_newest_version_that_fits():
    libs = [rpm("lib", v) for v in ("1.0", "2.0", "3.0")]
    available = numbered(rpm("new", requires=["lib >= 2.0"]),
                         rpm("old", requires=["lib < 3.0"]),
                         rpm("exact", requires=["lib = 1.0-1"]), *libs)
    assert solve(available, "new-1.0-1.noarch")[0] == {"new-1.0-1.noarch", "lib-3.0-1.noarch"}
    assert solve(available, "old-1.0-1.noarch")[0] == {"old-1.0-1.noarch", "lib-2.0-1.noarch"}
    assert solve(available, "exact-1.0-1.noarch")[0] == {"exact-1.0-1.noarch",
                                                         "lib-1.0-1.noarch"}


def test_an_epoch_outranks_the_version():
    available = numbered(rpm("a", requires=["lib >= 2.0"]), rpm("lib", "3.0"),
                         rpm("lib", "0.5", epoch="1"), rpm("b", requires=["lib < 1:0"]))
    assert solve(available, "a-1.0-1.noarch")[0] == {"a-1.0-1.noarch", "lib-0.5-1.noarch"}
    assert solve(available, "b-1.0-1.noarch")[0] == {"b-1.0-1.noarch", "lib-3.0-1.noarch"}


def test_a_file_requirement_is_provided_by_the_package_holding_the_file():
    available = numbered(rpm("script", requires=["/usr/bin/foo"]),
                         rpm("foo", files=["/usr/bin/foo", "/usr/share/doc/foo/README"]),
                         rpm("bar", files=["/usr/bin/bar"]))
    assert solve(available, "script-1.0-1.noarch") == (
        {"script-1.0-1.noarch", "foo-1.0-1.noarch"}, ())


def test_a_missing_dependency_is_named_and_the_rest_still_copied():
    available = numbered(
        rpm("foo", arch="x86_64", requires=["libbar.so.1()(64bit)", "baz"]),
        rpm("baz", requires=["qux >= 2"]), rpm("qux", "1.0"))
    names, problems = solve(available, "foo-1.0-1.x86_64")
    assert names == {"foo-1.0-1.x86_64", "baz-1.0-1.noarch"}
    assert sorted(problems) == ["baz-1.0-1.noarch requires qux >= 2, which nothing provides",
                                "foo-1.0-1.x86_64 requires libbar.so.1()(64bit), which nothing"
                                " provides"]


def test_a_dependency_already_in_the_target_is_not_copied():
    source = numbered(rpm("a", requires=["b", "c >= 2"]), rpm("b"), rpm("c", "2.0"),
                      rpm("c", "3.0"))
    target = {"b": (101, rpm("b")), "c": (102, rpm("c", "1.0"))}
    # b is there; c is there too, but too old: the newest that fits is copied
    assert solve(source, "a-1.0-1.noarch", target=target) == (
        {"a-1.0-1.noarch", "c-3.0-1.noarch"}, ())
    # an older b that fits is used, not updated from the source
    assert solve(numbered(rpm("a", requires=["b"]), rpm("b", "2.0")), "a-1.0-1.noarch",
                 target={"b": (101, rpm("b", "1.0"))}) == ({"a-1.0-1.noarch"}, ())


def test_a_target_that_is_itself_incomplete_or_conflicting_does_not_stop_a_copy():
    source = numbered(rpm("a", requires=["b"]), rpm("b"))
    target = {"broken": (101, rpm("broken", requires=["nowhere"])),
              "enemy": (102, rpm("enemy", conflicts=["a"]))}
    assert solve(source, "a-1.0-1.noarch", target=target) == (
        {"a-1.0-1.noarch", "b-1.0-1.noarch"}, ())


def test_the_machine_arch_is_preferred_to_a_compatible_one():
    available = numbered(
        rpm("app", arch="x86_64", requires=["libz", "libc.so.6()(64bit)"]),
        rpm("libz", arch="i686"), rpm("libz", arch="x86_64"),
        rpm("glibc", arch="i686", provides=["libc.so.6"]),
        rpm("glibc", arch="x86_64", provides=["libc.so.6()(64bit)"]))
    assert solve(available, "app-1.0-1.x86_64") == (
        {"app-1.0-1.x86_64", "libz-1.0-1.x86_64", "glibc-1.0-1.x86_64"}, ())


def test_each_wanted_package_is_solved_for_its_own_arch():
    available = numbered(rpm("app", arch="x86_64", requires=["lib"]),
                         rpm("app", arch="aarch64", requires=["lib"]),
                         rpm("lib", arch="x86_64"), rpm("lib", arch="aarch64"))
    assert solve(available, "app-1.0-1.x86_64", "app-1.0-1.aarch64")[0] == set(available)
    names, problems = solve(available, "app-1.0-1.aarch64", arch="x86_64")
    assert problems == ("app-1.0-1.aarch64 cannot be installed on x86_64",)


def test_a_noarch_package_alone_is_solved_for_the_sources_commonest_arch():
    available = numbered(rpm("tool", requires=["lib"]), rpm("lib", arch="aarch64"),
                         rpm("lib", arch="ppc64le"), rpm("other", arch="aarch64"))
    assert solve(available, "tool-1.0-1.noarch") == (
        {"tool-1.0-1.noarch", "lib-1.0-1.aarch64"}, ())
    assert solve(available, "tool-1.0-1.noarch", arch="ppc64le")[0] == {
        "tool-1.0-1.noarch", "lib-1.0-1.ppc64le"}


def test_a_conflict_picks_the_other_provider():
    available = numbered(rpm("site", requires=["webserver"], conflicts=["httpd"]),
                         rpm("httpd", provides=["webserver"]),
                         rpm("nginx", provides=["webserver"]))
    assert solve(available, "site-1.0-1.noarch") == (
        {"site-1.0-1.noarch", "nginx-1.0-1.noarch"}, ())


def test_wanted_packages_that_cannot_be_installed_together_are_all_copied():
    available = numbered(rpm("postfix", requires=["libpf"], conflicts=["sendmail"]),
                         rpm("sendmail", requires=["libsm"]), rpm("libpf"), rpm("libsm"),
                         rpm("new", obsoletes=["old"]), rpm("old"),
                         rpm("foo", "1.0"), rpm("foo", "2.0"))
    assert solve(available, *(name for name in available)) == (set(available), ())


def test_an_unsatisfiable_package_is_named_with_its_reasons_and_the_others_solved():
    available = numbered(rpm("a", requires=["b"], conflicts=["b"]), rpm("b"),
                         rpm("x", requires=["y"]), rpm("y"))
    names, problems = solve(available, "a-1.0-1.noarch", "x-1.0-1.noarch")
    assert names == {"a-1.0-1.noarch", "x-1.0-1.noarch", "y-1.0-1.noarch"}
    assert problems == (
        "a-1.0-1.noarch requires b, but no package that provides it can be installed",
        "a-1.0-1.noarch conflicts with b, which b-1.0-1.noarch provides")


def test_source_packages_are_copied_without_solving():
    available = numbered(rpm("a", arch="src", requires=["gcc", "make"]), rpm("gcc"))
    assert solve(available, "a-1.0-1.src") == ({"a-1.0-1.src"}, ())


def test_rich_dependencies_are_understood():
    available = numbered(rpm("a", requires=["(b or c)", "(d if e)"]), rpm("c"), rpm("d"),
                         rpm("e"))
    assert solve(available, "a-1.0-1.noarch") == ({"a-1.0-1.noarch", "c-1.0-1.noarch"}, ())


def test_a_rich_dependency_nothing_provides_is_named_and_the_rest_still_copied():
    available = numbered(rpm("a", requires=["(x or y)", "b"]), rpm("b"))
    assert solve(available, "a-1.0-1.noarch") == (
        {"a-1.0-1.noarch", "b-1.0-1.noarch"},
        ("a-1.0-1.noarch requires (x or y), which nothing provides",))


def test_a_wanted_id_that_is_not_a_package_is_kept_but_not_solved():
    assert closure([(1, rpm("a"))], [1, 99]).content_ids == {1, 99}


def test_fifty_thousand_packages(capsys):
    """50,000 packages: 46,900 apps each needing one of 1,000 libraries (three versions each,
    the app wanting the newest two) and a file of a tools package; 500 apps wanted."""
    def packages():
        for i in range(1000):
            for v in ("1", "2", "3"):
                yield (3 * i + int(v), rpm(f"lib{i}", f"{v}.0", arch="x86_64",
                                          provides=[f"libl{i}.so.{v}()(64bit)"],
                                          files=[f"/usr/lib64/libl{i}.so.{v}"]))
        for i in range(50_000 - 3000 - 100):
            yield (10_000 + i, rpm(f"app{i}", arch="x86_64",
                                   requires=[f"lib{i % 1000} >= 2.0", f"/usr/bin/tool{i % 100}"],
                                   files=[f"/usr/bin/app{i}", f"/usr/share/app{i}/data"]))
        for i in range(100):
            yield (100_000 + i, rpm(f"tools{i}", files=[f"/usr/bin/tool{i}"]))
    started, cpu = time.monotonic(), time.process_time()
    solution = closure(packages(), [10_000 + 7 * i for i in range(500)])
    seconds, cpu = time.monotonic() - started, time.process_time() - cpu
    expected = {10_000 + 7 * i for i in range(500)}
    expected |= {3 * ((7 * i) % 1000) + 3 for i in range(500)}  # lib newest: version 3
    expected |= {100_000 + (7 * i) % 100 for i in range(500)}
    assert solution == Solution(frozenset(expected), ())
    with capsys.disabled():
        print(f"\n50,000 packages, 500 wanted: {seconds:.2f} s ({cpu:.2f} s of CPU),"
              f" building the fields included")


def test_packages_read_from_real_rpms(tmp_path):
    rpm_tools.require("rpmbuild")
    rpms = tmp_path / "rpms"
    paths = [rpm_tools.build_rpm(rpms, "a", "1.0", requires=["b >= 1.5", "/usr/bin/foo"]),
             rpm_tools.build_rpm(rpms, "b", "1.0"), rpm_tools.build_rpm(rpms, "b", "2.0"),
             rpm_tools.build_rpm(rpms, "b", "3.0", epoch=1),
             rpm_tools.build_rpm(rpms, "foo", "1.0", files={"/usr/bin/foo": b"#!/bin/sh\n"}),
             rpm_tools.build_rpm(rpms, "c", "1.0", requires=["nothing-like-it"])]
    fields = [package.from_file(p, hashlib.sha256(p.read_bytes()).hexdigest()) for p in paths]
    available = {f"{f['name']}-{f['version']}": (i, f) for i, f in enumerate(fields)}
    assert solve(available, "a-1.0") == ({"a-1.0", "b-3.0", "foo-1.0"}, ())
    assert solve(available, "c-1.0") == (
        {"c-1.0"}, ("c-1.0-1.noarch requires nothing-like-it, which nothing provides",))


def test_the_same_packages_as_dnf_installs(tmp_path):
    """dnf, installing `app` from a repository of these RPMs into an empty root, takes what
    closure copies: the newest fitting version, one webserver, the file's owner, x86_64
    before i686, and nothing else."""
    rpm_tools.require("rpmbuild", "createrepo_c", "dnf", "rpm")
    if rpm_tools.basearch() != "x86_64":
        pytest.skip("the packages are built for an x86_64 machine")
    rpms = tmp_path / "rpms"
    build = lambda *args, **kw: rpm_tools.build_rpm(rpms, *args, **kw)  # noqa: E731
    paths = [build("app", "1.0", arch="x86_64",
                   requires=["lib >= 1.5", "webserver", "/usr/bin/helper", "libz"]),
             build("lib", "1.0"), build("lib", "2.0"), build("lib", "3.0"),
             build("nginx", "1.0", provides=["webserver"]),
             build("httpd", "1.0", provides=["webserver"]),
             build("helper", "1.0", files={"/usr/bin/helper": b"#!/bin/sh\n"}),
             build("libz", "1.0", arch="x86_64"), build("libz", "1.0", arch="i686")]
    repository = rpm_tools.make_repository(tmp_path / "repo", paths)
    dnf = rpm_tools.Dnf(tmp_path / "root")
    dnf.install(f"file://{repository}", "app")
    fields = [package.from_file(p, hashlib.sha256(p.read_bytes()).hexdigest()) for p in paths]
    available = {f"{f['name']}-0:{f['version']}-{f['release']}.{f['arch']}": (i, f)
                 for i, f in enumerate(fields)}
    names, problems = solve(available, "app-0:1.0-1.x86_64")
    assert problems == ()
    assert names == dnf.installed()
    assert "lib-0:3.0-1.noarch" in names and "libz-0:1.0-1.x86_64" in names
