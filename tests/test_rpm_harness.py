"""The RPM harness (tests/rpm_tools.py) against the real tools: rpmbuild, createrepo_c,
modifyrepo_c and dnf, with repositories served over HTTP on 127.0.0.1."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests import rpm_tools
from tests.http_fixtures import file_server  # noqa: F401
from tests.rpm_tools import (Dnf, build_rpm, build_srpm, comps, make_repository, modules,
                             package, updateinfo)


@pytest.fixture
def tools() -> None:
    rpm_tools.require("rpmbuild", "createrepo_c", "modifyrepo_c", "dnf", "rpm")


@pytest.fixture
def serve(tmp_path: Path, file_server, tools):
    """serve(name, rpms, **metadata) -> the URL of a repository made at tmp_path/srv/name."""
    server = file_server(tmp_path / "srv")

    def make(name: str, rpms, **metadata) -> str:
        make_repository(tmp_path / "srv" / name, rpms, **metadata)
        return f"{server.url}{name}/"

    return make


def test_build_rpm_is_deterministic_and_named_as_built(tmp_path, tools):
    first = build_rpm(tmp_path / "one", "a", "1.0", epoch=2, requires=["b >= 1.0"],
                      provides=["pallet-test(a)"], files={"/etc/a.conf": b"x = 1\n"})
    second = build_rpm(tmp_path / "two", "a", "1.0", epoch=2, requires=["b >= 1.0"],
                       provides=["pallet-test(a)"], files={"/etc/a.conf": b"x = 1\n"})
    assert first.name == "a-1.0-1.noarch.rpm"
    assert first.read_bytes() == second.read_bytes()
    assert package(first).nevra == "a-2:1.0-1.noarch"
    arch = rpm_tools.basearch()
    assert build_rpm(tmp_path, "c", "1", arch=arch).name == f"c-1-1.{arch}.rpm"
    source = build_srpm(tmp_path, "a", "1.0")
    assert source.name == "a-1.0-1.src.rpm"
    assert package(source).arch == "src"
    assert package(first).sourcerpm == "a-1.0-1.src.rpm"


@pytest.mark.parametrize("compress", ["gz", "xz", "bz2"])
def test_make_repository_compresses_all_metadata(tmp_path, tools, compress):
    b = build_rpm(tmp_path, "b", "1.0")
    root = make_repository(tmp_path / "repo", [b], compress=compress,
                           updateinfo_xml=updateinfo([{"id": "PALLET-1", "packages": [b]}]),
                           comps_xml=comps("tools", ["b"]), modules_yaml=modules("m", "1", [b]))
    assert (root / "Packages" / "b" / b.name).read_bytes() == b.read_bytes()
    metadata = {p.name.split("-", 1)[1] for p in (root / "repodata").iterdir()
                if p.name != "repomd.xml"}
    assert metadata == {f"{kind}.{compress}" for kind in (
        "primary.xml", "filelists.xml", "other.xml", "updateinfo.xml", "comps.xml",
        "modules.yaml")}


def test_dnf_installs_a_package_and_its_dependency(tmp_path, serve):
    b = build_rpm(tmp_path / "rpms", "b", "1.0")
    a = build_rpm(tmp_path / "rpms", "a", "1.0", requires=["b >= 1.0"],
                  files={"/usr/share/a/README": b"a\n"})
    url = serve("one", [a, b, build_srpm(tmp_path / "rpms", "a", "1.0")])
    dnf = Dnf(tmp_path / "root")
    dnf.install(url, "a")
    assert dnf.installed() == {"a-0:1.0-1.noarch", "b-0:1.0-1.noarch"}
    assert (tmp_path / "root" / "usr/share/a/README").read_bytes() == b"a\n"


def test_dnf_upgrades_from_a_second_repository(tmp_path, serve):
    b = build_rpm(tmp_path / "rpms", "b", "1.0")
    a1 = build_rpm(tmp_path / "rpms", "a", "1.0", requires=["b"])
    a2 = build_rpm(tmp_path / "rpms", "a", "2.0", requires=["b"])
    one, two = serve("one", [a1, b]), serve("two", [a2])
    dnf = Dnf(tmp_path / "root")
    dnf.install(one, "a")
    assert dnf.installed() == {"a-0:1.0-1.noarch", "b-0:1.0-1.noarch"}
    dnf.run([one, two], "upgrade")
    assert dnf.installed() == {"a-0:2.0-1.noarch", "b-0:1.0-1.noarch"}


def test_dnf_lists_an_advisory_from_updateinfo(tmp_path, serve):
    a1 = build_rpm(tmp_path / "rpms", "a", "1.0")
    a2 = build_rpm(tmp_path / "rpms", "a", "2.0")
    advisory = {"id": "PALLET-2024-0001", "type": "security", "severity": "Important",
                "title": "a 2.0 fixes everything", "issued": "2024-01-02 00:00:00",
                "packages": [a2]}
    url = serve("one", [a1, a2], updateinfo_xml=updateinfo([advisory]))
    dnf = Dnf(tmp_path / "root")
    dnf.install(url, "a-1.0")
    listed = dnf.run(url, "updateinfo", "list").stdout
    # dnf shows a NEVRA without its epoch when it is 0
    assert "PALLET-2024-0001 Important/Sec. a-2.0-1.noarch" in " ".join(listed.split())
    dnf.run(url, "upgrade", "--advisory=PALLET-2024-0001")
    assert dnf.installed() == {"a-0:2.0-1.noarch"}


def test_dnf_installs_a_group_from_comps(tmp_path, serve):
    rpms = [build_rpm(tmp_path / "rpms", name, "1.0") for name in ("a", "b", "c")]
    url = serve("one", rpms, comps_xml=comps("pallet-tools", ["a", "b"], name="Pallet tools"))
    dnf = Dnf(tmp_path / "root")
    assert "Pallet tools" in dnf.run(url, "group", "list").stdout
    dnf.run(url, "group", "install", "pallet-tools")
    # dnf exits 0 even when a group names a package no repository has: assert on the result.
    assert dnf.installed() == {"a-0:1.0-1.noarch", "b-0:1.0-1.noarch"}


def test_dnf_enables_a_module_stream_and_installs_from_it(tmp_path, serve):
    m1 = build_rpm(tmp_path / "rpms", "m", "1.0", release="1.module")
    m2 = build_rpm(tmp_path / "rpms", "m", "2.0", release="1.module")
    plain = build_rpm(tmp_path / "rpms", "m", "3.0")  # not modular: hidden by either stream
    url = serve("one", [m1, m2, plain],
                modules_yaml=modules("pallet", "1", [m1]) + modules("pallet", "2", [m2],
                                                                   default=False))
    listed = " ".join(Dnf(tmp_path / "probe").run(url, "module", "list").stdout.split())
    assert "pallet 1 [d] default [d]" in listed and "pallet 2 default" in listed
    dnf = Dnf(tmp_path / "root")
    dnf.run(url, "module", "enable", "pallet:2")
    dnf.install(url, "m")
    assert dnf.installed() == {"m-0:2.0-1.module.noarch"}
    other = Dnf(tmp_path / "other")
    other.run(url, "module", "install", "pallet")  # the default stream and profile
    assert other.installed() == {"m-0:1.0-1.module.noarch"}


def test_require_skips_or_fails_on_a_missing_tool(monkeypatch):
    monkeypatch.delenv("PALLET_TEST_REQUIRE_TOOLS", raising=False)
    with pytest.raises(pytest.skip.Exception, match="pallet-no-such-tool"):
        rpm_tools.require("sh", "pallet-no-such-tool")
    monkeypatch.setenv("PALLET_TEST_REQUIRE_TOOLS", "1")
    with pytest.raises(pytest.fail.Exception, match="pallet-no-such-tool"):
        rpm_tools.require("pallet-no-such-tool")
    rpm_tools.require("sh")


def test_a_failing_command_raises_with_its_output(tmp_path, tools):
    empty = make_repository(tmp_path / "empty", []).as_uri() + "/"  # file://, no server
    with pytest.raises(rpm_tools.ToolError, match=r"(?s)exit status 1.*No match for argument"):
        Dnf(tmp_path / "root").install(empty, "no-such-package")
