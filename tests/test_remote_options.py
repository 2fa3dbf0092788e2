"""Sync options on remotes: validated against the repository type's model at create and
update (API and CLI), applied by the rpm type's sync (skip source packages, keep the newest N
versions of each name and arch, in rpm's own order, checked against the `rpm` command), and
a changed option makes a re-sync look again instead of stopping at the fingerprint."""

from __future__ import annotations

import subprocess
from pathlib import Path

import createrepo_c as cr
import pytest
from alembic import command
from sqlalchemy import text

from pallet.db import Database
from pallet.db.migrate import alembic_config, upgrade
from pallet.plugins.rpm.evr import EVR, vercmp
from pallet.plugins.rpm.sync_options import RpmSyncOptions, package_filter
from pallet.remotes.models import Remote, SyncFingerprint
from pallet.repositories.models import Repository
from tests.conftest import empty_database, make_settings, wait_for_task
from tests.http_fixtures import file_server  # noqa: F401 - the fixture
from tests.rpm_tools import build_rpm, build_srpm, make_repository, require, updateinfo
from tests.test_api import assert_error
# The CLI fixtures: a real `pallet serve` for this module, and the `pallet` command.
from tests.test_cli import cli_env, pallet, pallet_json, server, server_database  # noqa: F401

API = "/api/v1"


@pytest.fixture
def settings(tmp_path, database_url):
    return make_settings(tmp_path, database_url, max_index_size=1 << 20)


# -- rpm's version order, against rpm itself --------------------------------------------------

VERSIONS = [
    ("1.0", "1.0"), ("1.0", "2.0"), ("2.0", "1.0"), ("2.0.1", "2.0.1"), ("2.0", "2.0.1"),
    ("2.0.1a", "2.0.1"), ("5.5p1", "5.5p2"), ("5.5p1", "5.5p10"), ("10xyz", "10.1xyz"),
    ("xyz10", "xyz10.1"), ("xyz.4", "8"), ("5.6p1", "6.5p1"), ("6.0.rc1", "6.0"),
    ("10b2", "10a1"), ("1.0a", "1.0aa"), ("10.0001", "10.1"), ("10.0001", "10.0039"),
    ("4.999.9", "5.0"), ("20101121", "20101122"), ("2.0", "2_0"), ("a+", "a_"), ("+a", "_a"),
    ("_+", "+_"), ("+", "_"), ("1.0", "1.00"), ("01", "1"), ("1.2.3", "1.2.3.0"),
    ("1a", "1.a"), ("a1", "1a"), ("1.0a", "1.0.1"), ("9", "10"), ("0.9.99", "0.10"),
    ("1.0~rc1", "1.0"), ("1.0", "1.0~rc1"), ("1.0~rc1", "1.0~rc2"), ("1.0~rc1~git1", "1.0~rc1"),
    ("1.0~~", "1.0~"), ("1.0~rc1", "1.0~"), ("~1", "0"), ("1.0^", "1.0"), ("1.0", "1.0^"),
    ("1.0^git1", "1.0"), ("1.0^git1", "1.0^git2"), ("1.0^git1", "1.01"), ("1.0^git1", "1.0.1"),
    ("1.0^20160101^git1", "1.0^20160101"), ("1.0~rc1^git1", "1.0~rc1"),
    ("1.0^git1~pre", "1.0^git1"), ("1.0~rc1", "1.0^git1"), ("1.0^", "1.0~"),
    ("1.0^a", "1.0a"), ("2.0.0.", "2.0.0"), ("1.0é", "1.0"), ("el9_1", "el9.1"),
    ("1.el9", "1.el9_1"), ("2.fc39", "10.fc39"),
]
EVRS = [
    ("1:1.0-1", "2.0-1"), ("0:1.0-1", "1.0-1"), ("1.0-2", "1.0-10"), ("1.0-1", "1.0~rc1-5"),
    ("2:0.1-1", "10:0.1-1"), ("1.0-1.el9", "1.0-1.el9_1"), ("1:0.5-1", "0:2.0-1"),
    ("3.1-1~beta", "3.1-1"),
]


def rpm_says(pairs: list[tuple[str, str]]) -> list[int]:
    """What `rpm.vercmp` answers for each pair, in one run of rpm."""
    require("rpm")
    lua = " ".join(f"print(rpm.vercmp([[{a}]], [[{b}]]) .. ' ')" for a, b in pairs)
    out = subprocess.run(["rpm", "--eval", f"%{{lua: {lua}}}"], capture_output=True,
                         text=True, check=True, timeout=60).stdout
    return [int(word) for word in out.split()]


def parsed(evr: str) -> EVR:
    epoch, _, rest = evr.rpartition(":")
    version, _, release = rest.rpartition("-")
    return EVR(epoch or "0", version, release)


def test_vercmp_orders_versions_as_rpm_does():
    mine = [vercmp(a, b) for a, b in VERSIONS]
    assert list(zip(VERSIONS, mine)) == list(zip(VERSIONS, rpm_says(VERSIONS)))
    assert [vercmp(b, a) for a, b in VERSIONS] == [-x for x in mine]  # antisymmetric


def test_evr_orders_epoch_version_release_as_rpm_does():
    mine = [parsed(a).compare(parsed(b)) for a, b in EVRS]
    assert list(zip(EVRS, mine)) == list(zip(EVRS, rpm_says(EVRS)))
    assert parsed("1:0.5-1") > parsed("2.0-1") and parsed("1.0-1") == parsed("1.00-1")
    assert sorted([parsed("1.0-1"), parsed("1.0~rc1-1"), parsed("1:0.1-1")]) == \
        [parsed("1.0~rc1-1"), parsed("1.0-1"), parsed("1:0.1-1")]


# -- the rpm filter over a primary.xml, without building packages -----------------------------

def primary(tmp_path: Path, nevras: list[str]) -> str:
    """A primary.xml.gz (by createrepo_c) holding packages of these name-[e:]v-r.arch."""
    path = tmp_path / "primary.xml.gz"
    writer = cr.PrimaryXmlFile(str(path))
    writer.set_num_of_pkgs(len(nevras))
    for index, nevra in enumerate(nevras):
        name, rest = nevra.split("-", 1)
        evr, arch = rest.rsplit(".", 1)
        package = cr.Package()
        package.name, package.arch = name, arch
        epoch_evr = parsed(evr)
        package.epoch, package.version, package.release = (epoch_evr.epoch,
                                                           epoch_evr.version,
                                                           epoch_evr.release)
        package.pkgId, package.checksum_type = f"{index:064x}", "sha256"
        package.location_href = f"Packages/{nevra}.rpm"
        writer.add_pkg(package)
    writer.close()
    return str(path)


def kept(path: str, **options) -> list[str]:
    wanted = package_filter(RpmSyncOptions(**options), path, "primary.xml")
    packages = []
    cr.xml_parse_primary(path, pkgcb=lambda p: packages.append(p) or True, do_files=False)
    return [f"{p.name}-{p.epoch}:{p.version}-{p.release}.{p.arch}" for p in packages
            if wanted is None or wanted(p)]


def test_retention_keeps_the_newest_versions_of_each_name_and_arch(tmp_path):
    path = primary(tmp_path, [
        "c-1.0-1.noarch", "c-1:0.5-1.noarch", "c-1.0~rc1-1.noarch", "c-2.0-1.noarch",
        "c-1.0-1.x86_64", "c-0.9-1.x86_64", "c-2.0-1.src", "c-1.0-1.src",
        "d-1.0-9.noarch", "d-1.0-10.noarch", "d-1.00-10.noarch",  # 1.0 equals 1.00
        "e-1.0-1.noarch", "e-1.0^git1-1.noarch", "e-1.0.1-1.noarch"])
    assert kept(path, retain_package_versions=1) == [
        "c-1:0.5-1.noarch", "c-0:1.0-1.x86_64", "c-0:2.0-1.src",
        "d-0:1.0-10.noarch", "d-0:1.00-10.noarch", "e-0:1.0.1-1.noarch"]
    assert kept(path, retain_package_versions=2) == [
        "c-1:0.5-1.noarch", "c-0:2.0-1.noarch", "c-0:1.0-1.x86_64", "c-0:0.9-1.x86_64",
        "c-0:2.0-1.src", "c-0:1.0-1.src", "d-0:1.0-9.noarch", "d-0:1.0-10.noarch",
        "d-0:1.00-10.noarch", "e-0:1.0^git1-1.noarch", "e-0:1.0.1-1.noarch"]
    assert "c-0:1.0~rc1-1.noarch" not in kept(path, retain_package_versions=3)
    assert len(kept(path, retain_package_versions=4)) == 14
    assert kept(path, skip_types=["srpm"], retain_package_versions=1) == [
        "c-1:0.5-1.noarch", "c-0:1.0-1.x86_64", "d-0:1.0-10.noarch", "d-0:1.00-10.noarch",
        "e-0:1.0.1-1.noarch"]
    assert package_filter(RpmSyncOptions(), path, "primary.xml") is None  # no second look


def test_the_rpm_options_model():
    assert RpmSyncOptions(skip_types=["srpm", "srpm"]).skip_types == ["srpm"]
    for wrong in ({"skip_types": ["rpm"]}, {"retain_package_versions": 0},
                  {"retain_package_versions": True}, {"retain_package_versions": 10**20},
                  {"retain_package_versions": "many"}, {"other": 1}):
        with pytest.raises(ValueError):
            RpmSyncOptions(**wrong)


# -- options through the API --------------------------------------------------------------------

def create(client, name="el", type="rpm", **fields):
    return client.post(f"{API}/remotes", json={"name": name, "type": type,
                                                "url": "https://mirror.example/el9/", **fields})


def test_options_are_validated_at_create_and_update(client):
    created = create(client, options={"skip_types": ["srpm"], "retain_package_versions": 3})
    assert created.status_code == 201, created.text
    assert created.json()["options"] == {"skip_types": ["srpm"], "retain_package_versions": 3}
    assert create(client, name="text", options={"skip_types": "srpm"}).json()["options"] == \
        {"skip_types": ["srpm"]}  # a list option as comma-separated text
    assert create(client, name="plain").json()["options"] == {}

    for options, words in [
            ({"retain_versions": 2}, ["options.retain_versions", "is not a sync option of "
                                      "rpm remotes", "skip_types, retain_package_versions"]),
            ({"retain_package_versions": 0}, ["options.retain_package_versions",
                                              "greater than or equal to 1"]),
            ({"retain_package_versions": "three"}, ["options.retain_package_versions"]),
            ({"skip_types": ["rpm"]}, ["options.skip_types", "'srpm'"]),
            ({"skip_types": "srpm,debug"}, ["options.skip_types"])]:
        error = assert_error(create(client, name="bad", options=options), 400, "invalid")
        assert all(word in error["message"] for word in words), error
        assert error["details"]["field"] == "options"
        assert_error(client.get(f"{API}/remotes/bad"), 404, "not_found")  # nothing stored
        error = assert_error(client.patch(f"{API}/remotes/el", json={"options": options}),
                             400, "invalid")
        assert all(word in error["message"] for word in words), error
    assert client.get(f"{API}/remotes/el").json()["options"] == {
        "skip_types": ["srpm"], "retain_package_versions": 3}  # unchanged

    updated = client.patch(f"{API}/remotes/el", json={"options": {"retain_package_versions": 1}})
    assert updated.json()["options"] == {"retain_package_versions": 1}  # replaces them all
    assert client.patch(f"{API}/remotes/el", json={"options": None}).json()["options"] == {}
    assert_error(create(client, name="odd", options=["srpm"]), 400, "invalid")


def test_the_file_type_refuses_any_option(client):
    error = assert_error(create(client, type="file", options={"skip_types": ["srpm"]}), 400,
                         "invalid")
    assert "is not a sync option of file remotes (they take none)" in error["message"]
    assert create(client, type="file", options={}).status_code == 201
    assert_error(client.patch(f"{API}/remotes/el", json={"options": {"x": 1}}), 400, "invalid")


# -- the rpm sync -------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def rpms(tmp_path_factory) -> dict[str, Path]:
    """c in several versions (a pre-release, an epoch bump, two arches, a source package),
    and d in two releases."""
    require("rpmbuild")
    folder = tmp_path_factory.mktemp("rpms")
    return {"c-1.0~rc1": build_rpm(folder, "c", "1.0~rc1"),
            "c-1.0": build_rpm(folder, "c", "1.0"),
            "c-2.0": build_rpm(folder, "c", "2.0"),
            "c-1:0.5": build_rpm(folder, "c", "0.5", epoch=1),
            "c-1.0.x86_64": build_rpm(folder, "c", "1.0", arch="x86_64"),
            "c-2.0.x86_64": build_rpm(folder, "c", "2.0", arch="x86_64"),
            "c-2.0.src": build_srpm(folder, "c", "2.0"),
            "d-1.0-9": build_rpm(folder, "d", "1.0", "9"),
            "d-1.0-10": build_rpm(folder, "d", "1.0", "10")}


def sync(client, url: str | None = None, *, name: str = "el", **remote) -> dict:
    if url is not None:
        response = client.post(f"{API}/remotes", json={
            "name": name, "url": url, "type": "rpm", "max_retries": 0, **remote})
        assert response.status_code == 201, response.text
        response = client.post(f"{API}/repositories", json={
            "name": name, "type": "rpm", "remote": name, "autopublish": True})
        assert response.status_code == 201, response.text
    elif remote:
        response = client.patch(f"{API}/remotes/{name}", json=remote)
        assert response.status_code == 200, response.text
    response = client.post(f"{API}/repositories/{name}/sync", json={})
    assert response.status_code == 202, response.text
    task = wait_for_task(client, response.json()["href"])
    assert task["state"] == "completed", task["error"]
    return task["result"]


def nevras(client, name: str = "el") -> set[str]:
    listed = client.get(f"{API}/content", params={"repository": name, "type": "rpm.package",
                                                  "limit": 1000}).json()["results"]
    return {"{name}-{epoch}:{version}-{release}.{arch}".format(**u["fields"]) for u in listed}


def advisories(client, name: str = "el") -> list[str]:
    listed = client.get(f"{API}/content", params={"repository": name, "type": "rpm.advisory"}
                        ).json()["results"]
    return [u["fields"]["id"] for u in listed]


def test_skip_srpm_leaves_source_packages_out(client, workers, file_server, tmp_path, rpms):
    root = make_repository(tmp_path / "up", [rpms["c-2.0"], rpms["c-2.0.src"]])
    result = sync(client, file_server(root).url, options={"skip_types": ["srpm"]})
    assert nevras(client) == {"c-0:2.0-1.noarch"} and result["version"] == 1
    sync(client, options={})
    assert nevras(client) == {"c-0:2.0-1.noarch", "c-0:2.0-1.src"}


def test_retain_keeps_the_newest_versions_and_mirror_drops_the_rest(client, workers,
                                                                    file_server, tmp_path,
                                                                    rpms):
    require("modifyrepo_c")
    old_fix = {"id": "PALLET-2024-0002", "title": "the fix in 1.0", "packages": [rpms["c-1.0"]]}
    root = make_repository(tmp_path / "up", rpms.values(), updateinfo_xml=updateinfo([old_fix]))
    sync(client, file_server(root).url, options={"retain_package_versions": 2})
    assert nevras(client) == {
        "c-1:0.5-1.noarch", "c-0:2.0-1.noarch",  # the epoch bump is the newest
        "c-0:2.0-1.x86_64", "c-0:1.0-1.x86_64", "c-0:2.0-1.src",
        "d-0:1.0-10.noarch", "d-0:1.0-9.noarch"}
    assert advisories(client) == ["PALLET-2024-0002"]  # advisories are never left out

    sync(client, options={"retain_package_versions": 3})  # additive: 1.0 added, not 1.0~rc1
    assert "c-0:1.0-1.noarch" in nevras(client) and len(nevras(client)) == 8

    sync(client, options={"retain_package_versions": 1}, mirror=True)
    assert nevras(client) == {"c-1:0.5-1.noarch", "c-0:2.0-1.x86_64", "c-0:2.0-1.src",
                              "d-0:1.0-10.noarch"}
    assert advisories(client) == ["PALLET-2024-0002"]
    published = client.get(f"{API}/publications", params={"repository": "el"}).json()
    assert published["count"] >= 1


def test_a_changed_option_makes_the_resync_look_again(client, workers, file_server, tmp_path,
                                                      rpms):
    root = make_repository(tmp_path / "up", [rpms["c-1.0"], rpms["c-2.0"], rpms["c-2.0.src"]])
    server = file_server(root)
    assert sync(client, server.url, policy="on_demand")["version"] == 1
    assert sync(client)["unchanged"] is True

    server.requests.clear()
    looked = sync(client, options={"retain_package_versions": 1}, mirror=True)
    assert "unchanged" not in looked and looked["version"] == 2
    assert len(server.requests) > 1  # read past repomd.xml
    assert nevras(client) == {"c-0:2.0-1.noarch", "c-0:2.0-1.src"}
    assert sync(client)["unchanged"] is True  # the same options again: the stop applies

    assert sync(client, options={"skip_types": "srpm", "retain_package_versions": 1}
                )["version"] == 3
    assert nevras(client) == {"c-0:2.0-1.noarch"}
    assert sync(client, options={})["version"] == 4
    assert len(nevras(client)) == 3
    # Options equal to the defaults are the same as none: the stop applies.
    assert sync(client, options={"skip_types": [], "retain_package_versions": None}
                )["unchanged"] is True


@pytest.fixture
def empty_database_url(tmp_path):
    yield from empty_database(tmp_path, "options")


def test_remotes_and_fingerprints_from_before_have_no_options(empty_database_url):
    """A database of revision 0007 with a remote, a repository using it and a sync
    fingerprint, migrated: nothing is lost (on SQLite, copying `remote` anew would cascade),
    and both have options {}, which equal the defaults, so the fingerprint still holds."""
    db = Database(empty_database_url)
    upgrade(db, "0007")
    with db.write() as session:
        session.execute(text(
            "INSERT INTO remote (name, type, url, policy, mirror, download_concurrency, "
            "max_retries, connect_timeout, read_timeout, tls_validation, headers, created_at, "
            "updated_at) VALUES ('el', 'rpm', 'https://mirror.example/', 'on_demand', false, "
            "10, 3, 30, 60, true, '{}', '2026-12-01 00:00:00', '2026-12-01 00:00:00')"))
        session.execute(text(
            "INSERT INTO repository (name, type, description, next_version, autopublish, "
            "publish_options, created_at, updated_at, remote_id) SELECT 'el', 'rpm', '', 1, "
            "false, '{}', '2026-12-01 00:00:00', '2026-12-01 00:00:00', id FROM remote"))
        session.execute(text(
            "INSERT INTO sync_fingerprint (repository_id, remote_id, sha256, version, "
            "policy, mirror) SELECT repository.id, remote.id, :sha, 0, 'on_demand', false "
            "FROM repository, remote"), {"sha": "0" * 64})
    upgrade(db)
    with db.read() as session:
        remote = session.query(Remote).one()
        assert remote.options == {} and session.query(SyncFingerprint).one().options == {}
        assert session.query(Repository).one().remote_id == remote.id
    command.downgrade(alembic_config(db), "0007")
    with db.read() as session:
        assert session.execute(text("SELECT count(*) FROM sync_fingerprint")).scalar() == 1
        assert session.execute(text("SELECT remote_id FROM repository")).scalar() == remote.id
    db.dispose()


# -- the CLI against a real server ------------------------------------------------------------

def test_cli_remote_options(pallet, pallet_json, file_server, tmp_path, rpms):
    root = make_repository(tmp_path / "up", [rpms["c-1.0"], rpms["c-2.0"], rpms["c-2.0.src"]])
    url = file_server(root).url
    created = pallet_json("remote", "create", "cli-el", "--type", "rpm", "--url", url,
                          "--option", "skip_types=srpm", "--option",
                          "retain_package_versions=1")
    assert created["options"] == {"skip_types": ["srpm"], "retain_package_versions": 1}
    shown = pallet("remote", "show", "cli-el").stdout
    assert "options: retain_package_versions=1; skip_types=srpm" in shown

    pallet("repository", "create", "cli-el", "--type", "rpm", "--remote", "cli-el")
    assert "created version 1" in pallet("repository", "sync", "cli-el").stdout
    listed = pallet_json("content", "list", "--repository", "cli-el")["results"]
    assert [u["fields"]["version"] + "." + u["fields"]["arch"] for u in listed] == \
        ["2.0.noarch"]

    failed = pallet("remote", "update", "cli-el", "--option", "retain_package_versions=0",
                    expect=1)
    assert "retain_package_versions" in failed.stderr and "greater than" in failed.stderr
    failed = pallet("remote", "create", "cli-bad", "--type", "rpm", "--url", url,
                    "--option", "keep=2", expect=1)
    assert "keep is not a sync option of rpm remotes" in failed.stderr
    pallet("remote", "show", "cli-bad", expect=1)
    assert "NAME=VALUE" in pallet("remote", "update", "cli-el", "--option", "novalue",
                                  expect=1).stderr
    failed = pallet("remote", "create", "cli-file", "--url", url, "--option",
                    "skip_types=srpm", expect=1)
    assert "not a sync option of file remotes" in failed.stderr

    updated = pallet_json("remote", "update", "cli-el", "--option", 'skip_types=["srpm"]')
    assert updated["options"] == {"skip_types": ["srpm"]}  # replaced them all
    assert pallet_json("remote", "update", "cli-el", "--clear", "options")["options"] == {}
    assert "options: none" in pallet("remote", "show", "cli-el").stdout
