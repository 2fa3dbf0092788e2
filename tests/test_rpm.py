"""The rpm type: yum repositories made by createrepo_c from real RPMs, synced over HTTP on
127.0.0.1, published with createrepo_c, and hostile metadata that must fail cleanly."""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import createrepo_c as cr
import httpx
import pytest
from sqlalchemy import func, select

from pallet.artifacts.models import Artifact
from pallet.content.models import Content
from pallet.plugins.rpm.package import checked, fields_of, location, to_createrepo
from tests.conftest import make_settings, wait_for_task
from tests.http_fixtures import file_server  # noqa: F401 - the fixture
from tests.servers import api_of, completed as run, servers  # noqa: F401 - the fixture
from tests.rpm_tools import (Dnf, build_rpm, build_srpm, make_repository, require,
                              updateinfo)

API = "/api/v1"


@pytest.fixture(scope="module")
def rpms(tmp_path_factory) -> dict[str, Path]:
    """Real packages: a requires b; a newer a; a source package."""
    require("rpmbuild")
    folder = tmp_path_factory.mktemp("rpms")
    return {"b": build_rpm(folder, "b", "1.0"),
            "a": build_rpm(folder, "a", "1.0", requires=["b >= 1.0"],
                           files={"/usr/share/a/README": b"alpha\n"}),
            "a2": build_rpm(folder, "a", "2.0", requires=["b >= 1.0"]),
            "a-src": build_srpm(folder, "a", "1.0")}


@pytest.fixture
def settings(tmp_path, database_url):
    return make_settings(tmp_path, database_url, max_index_size=1 << 20)


def yum_repository(root: Path, *paths: Path) -> Path:
    require("createrepo_c")
    return make_repository(root, list(paths))


def sync(client, url: str, *, policy: str = "immediate", name: str = "el") -> dict:
    if client.get(f"{API}/remotes/{name}").status_code == 404:
        response = client.post(f"{API}/remotes", json={
            "name": name, "url": url, "type": "rpm", "policy": policy, "max_retries": 0})
        assert response.status_code == 201, response.text
        response = client.post(f"{API}/repositories", json={
            "name": name, "type": "rpm", "remote": name, "autopublish": True})
        assert response.status_code == 201, response.text
    response = client.post(f"{API}/repositories/{name}/sync", json={})
    assert response.status_code == 202, response.text
    return wait_for_task(client, response.json()["href"])


def packages_of(client, name: str = "el") -> dict[str, dict]:
    listed = client.get(f"{API}/content", params={"repository": name, "limit": 1000}
                        ).json()["results"]
    return {f"{u['fields']['name']}-{u['fields']['version']}.{u['fields']['arch']}": u
            for u in listed}


def sha256_of(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def artifact_count(runtime) -> int:
    with runtime.db.read() as session:
        return session.scalar(select(func.count()).select_from(Artifact))


# -- sync -------------------------------------------------------------------------------------

def test_a_yum_repository_syncs_with_every_field_dnf_needs(client, workers, file_server,
                                                          tmp_path, rpms, runtime):
    server = file_server(yum_repository(tmp_path / "up", rpms["a"], rpms["b"]))
    task = sync(client, server.url)
    assert task["state"] == "completed", task["error"]
    assert task["result"]["units"] == 2 and task["result"]["downloaded"] == 2
    units = packages_of(client)
    a = units["a-1.0.noarch"]
    assert a["type"] == "rpm.package"
    assert a["fields"]["pkgid"] == sha256_of(rpms["a"])
    assert [d[0] for d in a["fields"]["requires"]] == ["b"]
    assert ["/usr/share/a/", "README"] in [f[1:] for f in a["fields"]["files"]]
    assert a["fields"]["changelogs"]
    assert [f["relative_path"] for f in a["artifacts"]] == [location("a", "1.0", "1", "noarch")]
    with runtime.db.read() as session:  # immediate: the packages' bytes are stored
        stored = set(session.scalars(select(Artifact.sha256)))
    assert {sha256_of(rpms["a"]), sha256_of(rpms["b"])} <= stored


def test_on_demand_stores_no_package_and_a_resync_changes_nothing(client, workers,
                                                                  file_server, tmp_path,
                                                                  rpms, runtime):
    server = file_server(yum_repository(tmp_path / "up", rpms["a"], rpms["b"]))
    first = sync(client, server.url, policy="on_demand")
    assert first["state"] == "completed", first["error"]
    stored = artifact_count(runtime)  # the publication's metadata only
    again = sync(client, server.url)
    assert again["state"] == "completed", again["error"]
    assert client.get(f"{API}/repositories/el").json()["latest_version"] == 1
    assert artifact_count(runtime) == stored


def test_a_resync_reading_the_same_repomd_stops_at_once(client, workers, file_server,
                                                        tmp_path, rpms):
    root = yum_repository(tmp_path / "up", rpms["a"], rpms["b"])
    server = file_server(root)
    assert sync(client, server.url, policy="on_demand")["result"]["version"] == 1
    server.requests.clear()
    again = sync(client, server.url)
    assert again["result"]["unchanged"] is True and again["result"]["version"] is None
    assert [r.path for r in server.requests] == ["/repodata/repomd.xml"]  # nothing else read

    # A version made since (here: the package b removed) means the sync must look again.
    b_id = packages_of(client)["b-1.0.noarch"]["id"]
    task = client.post(f"{API}/repositories/el/modify", json={"remove_content": [b_id]})
    assert wait_for_task(client, task.json()["href"])["state"] == "completed"
    looked = sync(client, server.url)
    assert "unchanged" not in looked["result"] and looked["result"]["version"] == 3
    assert set(packages_of(client)) == {"a-1.0.noarch", "b-1.0.noarch"}

    # The immediate policy always looks: its syncs also bring back bytes the store lost.
    assert client.patch(f"{API}/remotes/el", json={"policy": "immediate"}).status_code == 200
    assert "unchanged" not in sync(client, server.url)["result"]
    assert "unchanged" not in sync(client, server.url)["result"]


def test_a_newer_build_adds_a_version_and_a_rebuild_replaces_its_nevra(client, workers,
                                                                       file_server, tmp_path,
                                                                       rpms):
    root = yum_repository(tmp_path / "up", rpms["a"], rpms["b"])
    server = file_server(root)
    assert sync(client, server.url)["state"] == "completed"
    shutil.rmtree(root)
    yum_repository(root, rpms["a"], rpms["a2"], rpms["b"])
    assert sync(client, server.url)["result"]["version"] == 2
    assert set(packages_of(client)) == {"a-1.0.noarch", "a-2.0.noarch", "b-1.0.noarch"}

    rebuilt = build_rpm(tmp_path / "again", "b", "1.0", files={"/usr/share/b/x": b"other\n"})
    assert sha256_of(rebuilt) != sha256_of(rpms["b"])
    shutil.rmtree(root)
    yum_repository(root, rpms["a"], rpms["a2"], rebuilt)
    third = sync(client, server.url)
    assert third["result"]["version"] == 3
    units = packages_of(client)
    assert len(units) == 3  # the rebuilt b replaced the old one: one unit per NEVRA
    assert units["b-1.0.noarch"]["fields"]["pkgid"] == sha256_of(rebuilt)


def test_source_packages_sync_too(client, workers, file_server, tmp_path, rpms):
    server = file_server(yum_repository(tmp_path / "up", rpms["a"], rpms["a-src"]))
    assert sync(client, server.url)["state"] == "completed"
    assert set(packages_of(client)) == {"a-1.0.noarch", "a-1.0.src"}


def test_advisories_sync_and_an_updated_one_replaces_the_old(client, workers, file_server,
                                                             tmp_path, rpms):
    require("modifyrepo_c")
    root = tmp_path / "up"
    advisory = {"id": "PALLET-2024-0001", "type": "security", "severity": "Important",
                "title": "a fix", "packages": [rpms["a2"]]}
    make_repository(root, [rpms["a"], rpms["a2"], rpms["b"]],
                    updateinfo_xml=updateinfo([advisory]))
    server = file_server(root)
    assert sync(client, server.url)["state"] == "completed"
    listed = client.get(f"{API}/content", params={"repository": "el", "type": "rpm.advisory"}
                        ).json()["results"]
    assert [u["fields"]["id"] for u in listed] == ["PALLET-2024-0001"]
    fields = listed[0]["fields"]
    assert (fields["type"], fields["severity"]) == ("security", "Important")
    assert [p["name"] + "-" + p["version"] for c in fields["collections"]
            for p in c["packages"]] == ["a-2.0"]

    shutil.rmtree(root)
    make_repository(root, [rpms["a"], rpms["a2"], rpms["b"]], updateinfo_xml=updateinfo(
        [{**advisory, "title": "a better fix", "updated": "2024-02-01 00:00:00"}]))
    assert sync(client, server.url)["result"]["version"] == 2
    listed = client.get(f"{API}/content", params={"repository": "el", "type": "rpm.advisory"}
                        ).json()["results"]
    assert [u["fields"]["title"] for u in listed] == ["a better fix"]  # replaced, by its id


# -- hostile metadata: a clear task error, no version, nothing stored -------------------------

def crafted(root: Path, edit) -> Path:
    """A one-package yum repository whose package createrepo_c's writer is given after
    `edit(package)`: metadata no honest createrepo would write."""
    root.mkdir(parents=True)
    (root / "repodata").mkdir()
    package = cr.Package()
    package.name, package.epoch, package.version, package.release = "x", "0", "1.0", "1"
    package.arch, package.checksum_type, package.pkgId = "noarch", "sha256", "a" * 64
    package.location_href, package.size_package = "Packages/x/x-1.0-1.noarch.rpm", 10
    edit(package)
    repomd = cr.Repomd()
    for kind, writer in (("primary", cr.PrimaryXmlFile), ("filelists", cr.FilelistsXmlFile),
                         ("other", cr.OtherXmlFile)):
        path = root / "repodata" / f"{kind}.xml.gz"
        out = writer(str(path), cr.GZ)
        out.set_num_of_pkgs(1)
        out.add_pkg(package)
        out.close()
        record = cr.RepomdRecord(kind, str(path))
        record.fill(cr.SHA256)
        repomd.set_record(record)
    (root / "repodata" / "repomd.xml").write_text(repomd.xml_dump())
    return root


def refused(client, runtime, url: str, *words: str) -> dict:
    before = artifact_count(runtime)
    task = sync(client, url)
    assert task["state"] == "failed", task
    message = task["error"]["message"]
    assert all(word in message for word in words), message
    assert "Traceback" not in message
    assert client.get(f"{API}/repositories/el").json()["latest_version"] == 0
    assert artifact_count(runtime) == before
    return task


def set_location(href: str):
    def edit(package):
        package.location_href = href
    return edit


@pytest.mark.parametrize("href", ["../../etc/passwd", "http://elsewhere.invalid/x.rpm",
                                  "/etc/passwd", "Packages/%2e%2e/%2e%2e/x.rpm",
                                  "Packages/%2E%2E%2f%2E%2E%2fx.rpm"])
def test_a_package_located_outside_the_repository_is_refused(client, workers, file_server,
                                                             tmp_path, runtime, href):
    server = file_server(tmp_path)
    crafted(tmp_path / "repo", set_location(href))
    refused(client, runtime, server.url + "repo/", "outside the repository")


def test_a_package_whose_bytes_do_not_match_primary_stores_nothing(client, workers,
                                                                   file_server, tmp_path,
                                                                   runtime, rpms):
    root = yum_repository(tmp_path / "repo", rpms["a"], rpms["b"])
    served = root / location("b", "1.0", "1", "noarch")
    served.write_bytes(rpms["a"].read_bytes())  # another package's bytes under b's name
    task = refused(client, runtime, file_server(root).url, "b-1.0-1.noarch.rpm")
    assert task["error"]["code"] == "digest_mismatch", task["error"]
    with runtime.db.read() as session:  # a's bytes were fetched under a's own digest, or not
        stored = set(session.scalars(select(Artifact.sha256)))
    assert sha256_of(rpms["b"]) not in stored


@pytest.mark.parametrize("policy", ["on_demand", "streamed"])
def test_a_package_announced_by_sha1_only_needs_the_immediate_policy(client, workers,
                                                                     file_server, tmp_path,
                                                                     runtime, policy):
    def sha1(package):
        package.checksum_type, package.pkgId = "sha1", "b" * 40
    server = file_server(crafted(tmp_path / "repo", sha1))
    task = sync(client, server.url, policy=policy)
    assert task["state"] == "failed", task
    message = task["error"]["message"]
    assert "announces 'Packages/x/x-1.0-1.noarch.rpm' by its sha1 only" in message, message
    assert "cannot know the sha256" in message and "immediate policy" in message, message
    assert "not valid" not in message  # not an error of the index: of the policy
    assert client.get(f"{API}/repositories/el").json()["latest_version"] == 0
    assert artifact_count(runtime) == 0


@pytest.mark.parametrize("algorithm", ["sha1", "md5", "sha512"])
def test_packages_announced_by_another_checksum_are_stored_by_their_sha256(
        client, workers, file_server, tmp_path, rpms, runtime, algorithm):
    root = make_repository(tmp_path / "up", [rpms["a"], rpms["b"]],
                           extra_args=["--checksum", algorithm])
    primary = next((root / "repodata").glob("*primary.xml.gz")).read_bytes()
    assert f'<checksum type="{algorithm}" pkgid="YES">' in gzip.decompress(primary).decode()
    task = sync(client, file_server(root).url)
    assert task["state"] == "completed", task["error"]
    assert task["result"]["units"] == 2 and task["result"]["downloaded"] == 2
    units = packages_of(client)
    for name, rpm in (("a-1.0.noarch", rpms["a"]), ("b-1.0.noarch", rpms["b"])):
        assert units[name]["fields"]["pkgid"] == sha256_of(rpm)  # as if upstream said so
        assert [f["sha256"] for f in units[name]["artifacts"]] == [sha256_of(rpm)]
        assert runtime.storage.hash_stored(sha256_of(rpm)) == sha256_of(rpm)
    published = published_packages(client, runtime, task["result"]["publication"], tmp_path)
    assert {p.checksum_type for p in published} == {"sha256"}
    assert {p.pkgId for p in published} == {sha256_of(rpms["a"]), sha256_of(rpms["b"])}

    again = sync(client, file_server(root).url)  # the same units: no new version
    assert again["state"] == "completed", again["error"]
    assert again["result"]["version"] is None


def test_a_package_that_does_not_match_its_sha1_fails_the_sync_and_stores_nothing(
        client, workers, file_server, tmp_path, rpms, runtime):
    root = make_repository(tmp_path / "up", [rpms["a"], rpms["b"]],
                           extra_args=["--checksum", "sha1"])
    on_disk = root / "Packages" / "a" / rpms["a"].name
    data = bytearray(on_disk.read_bytes())
    data[-100] ^= 1  # the same size, other bytes
    on_disk.write_bytes(bytes(data))
    task = sync(client, file_server(root).url)
    assert task["state"] == "failed", task
    error = task["error"]
    assert error["code"] == "digest_mismatch", error
    assert "sha1" in error["message"] and rpms["a"].name in error["message"], error
    assert error["details"]["url"].endswith(rpms["a"].name)
    assert client.get(f"{API}/repositories/el").json()["latest_version"] == 0
    assert not runtime.storage.exists(hashlib.sha256(data).hexdigest())
    with runtime.db.read() as session:
        assert session.scalar(select(func.count()).select_from(Content)) == 0


def published_packages(client, runtime, publication_id: int, folder: Path) -> list:
    """The packages (createrepo_c's) a publication's primary.xml announces."""
    files = client.get(f"{API}/publications/{publication_id}").json()["metadata_files"]
    primary = next(f for f in files if f["relative_path"].endswith("primary.xml.gz"))
    path = folder / "published-primary.xml.gz"
    with runtime.storage.open(primary["sha256"]) as source:
        path.write_bytes(source.read())
    packages = []
    cr.xml_parse_primary(str(path), pkgcb=lambda p: packages.append(p) or True,
                         do_files=False)
    return packages


def test_metadata_whose_checksum_does_not_match_repomd_is_refused(client, workers, file_server,
                                                                  tmp_path, rpms, runtime):
    root = yum_repository(tmp_path / "up", rpms["a"], rpms["b"])
    primary = next((root / "repodata").glob("*-primary.xml.gz"))
    data = primary.read_bytes()
    primary.write_bytes(data[:-9] + bytes([data[-9] ^ 1]) + data[-8:])  # same size
    refused(client, runtime, file_server(root).url, "primary", "sha256", "announced")


def test_a_decompression_bomb_stops_at_the_limit(client, workers, file_server, tmp_path,
                                                 runtime):
    def bomb(package):  # 4 MB of description, well over this server's 1 MiB limit
        package.description = "x" * (4 << 20)
    server = file_server(crafted(tmp_path / "repo", bomb))
    refused(client, runtime, server.url, "decompresses to more than")


def test_truncated_metadata_is_refused(client, workers, file_server, tmp_path, rpms, runtime):
    root = yum_repository(tmp_path / "up", rpms["a"], rpms["b"])
    for kind in ("primary",):
        path = next((root / "repodata").glob(f"*-{kind}.xml.gz"))
        cut = path.read_bytes()[:-40]
        path.write_bytes(cut)
        # repomd.xml vouches for the cut file, so only decompressing it can tell
        record = cr.RepomdRecord(kind, str(path))
        record.fill(cr.SHA256)
        repomd = cr.Repomd(str(root / "repodata" / "repomd.xml"))
        repomd.set_record(record)
        (root / "repodata" / "repomd.xml").write_text(repomd.xml_dump())
    refused(client, runtime, file_server(root).url, "primary")


def test_a_repomd_that_is_not_xml_is_refused(client, workers, file_server, tmp_path, runtime):
    (tmp_path / "repodata").mkdir()
    (tmp_path / "repodata" / "repomd.xml").write_bytes(b"\x00junk")
    refused(client, runtime, file_server(tmp_path).url, "repomd.xml")


# -- publishing -----------------------------------------------------------------------------

def test_the_publication_is_yum_metadata_createrepo_c_reads_back(client, workers, file_server,
                                                                 tmp_path, rpms, runtime):
    server = file_server(yum_repository(tmp_path / "up", rpms["a"], rpms["b"]))
    assert sync(client, server.url)["state"] == "completed"
    publication = client.get(f"{API}/publications/1").json()
    files = {f["relative_path"]: f["sha256"] for f in publication["metadata_files"]}
    assert "repodata/repomd.xml" in files
    out = tmp_path / "published" / "repodata"
    out.mkdir(parents=True)
    for path, sha256 in files.items():
        with runtime.storage.open(sha256) as stream:
            (out.parent / path).write_bytes(stream.read())
    repomd = cr.Repomd(str(out / "repomd.xml"))
    records = {r.type: r for r in repomd.records}
    assert set(records) == {"primary", "filelists", "other"}
    paths = {kind: str(out.parent / records[kind].location_href) for kind in records}
    read = {p.nevra(): p for p in cr.PackageIterator(paths["primary"], paths["filelists"],
                                                     paths["other"])}
    assert set(read) == {"a-0:1.0-1.noarch", "b-0:1.0-1.noarch"}
    assert read["a-0:1.0-1.noarch"].location_href == "Packages/a/a-1.0-1.noarch.rpm"
    assert read["a-0:1.0-1.noarch"].requires == package_requires(rpms["a"])


def test_a_package_written_from_its_stored_fields_is_the_package_read():
    """What a publication writes of a unit is what was read into it: every field of yum's
    three files, after the fields' trip through JSON (lists for tuples, empty lists)."""
    original = cr.Package()
    original.name, original.epoch, original.version, original.release = "a", "2", "1.0", "3"
    original.arch, original.pkgId, original.checksum_type = "x86_64", "ab" * 32, "sha256"
    original.summary, original.description, original.url = "A", "An a.", "https://a.invalid"
    original.rpm_license, original.rpm_vendor, original.rpm_group = "MIT", "V", "G"
    original.rpm_buildhost, original.rpm_sourcerpm = "host", "a-1.0-3.src.rpm"
    original.rpm_packager, original.time_file, original.time_build = "P <p@a.invalid>", 5, 6
    original.size_package, original.size_installed, original.size_archive = 7, 8, 9
    original.rpm_header_start, original.rpm_header_end = 10, 11
    original.location_href = location("a", "1.0", "3", "x86_64")
    original.requires = [("libb.so.1()(64bit)", None, None, None, None, False),
                         ("b", "GE", "0", "1.0", None, False),
                         ("/bin/sh", None, None, None, None, True)]
    original.provides = [("a", "EQ", "2", "1.0", "3", False)]
    original.obsoletes = [("old-a", "LT", "0", "1.0", "1", False)]
    original.recommends = [("c", None, None, None, None, False)]
    original.files = [(None, "/usr/bin/", "a"), ("dir", "/usr/share/", "a"),
                      ("ghost", "/var/cache/a/", "state")]
    original.changelogs = [("P <p@a.invalid> - 1.0-3", 1704067200, "- Update")]
    fields = json.loads(json.dumps(checked(fields_of(original), "a test")
                                   .model_dump(mode="json")))
    written = to_createrepo(fields)
    for dump in (cr.xml_dump_primary, cr.xml_dump_filelists, cr.xml_dump_other):
        assert dump(written) == dump(original)


def package_requires(path: Path) -> list:
    return cr.package_from_rpm(str(path)).requires


# -- units from an uploaded file ----------------------------------------------------------------

def commit_upload(client, data: bytes, **commit) -> dict:
    """Upload `data` in one chunk and commit it with `commit`; the commit's answer."""
    href = client.post(f"{API}/uploads", json={"size": len(data)}).json()["href"]
    client.put(href, content=data, headers={"Content-Range": f"bytes 0-{len(data) - 1}/"
                                                             f"{len(data)}"})
    return client.post(f"{href}/commit",
                       json={"sha256": hashlib.sha256(data).hexdigest(), **commit})


def test_an_uploaded_rpm_is_read_from_its_header(client, workers, rpms):
    assert client.post(f"{API}/repositories", json={"name": "el", "type": "rpm"}
                       ).status_code == 201
    answer = commit_upload(client, rpms["a"].read_bytes(), type="rpm.package", repository="el")
    task = wait_for_task(client, answer.json()["href"])
    assert task["state"] == "completed", task["error"]
    assert task["result"]["version"] == 1
    unit = packages_of(client)["a-1.0.noarch"]
    assert unit["fields"]["pkgid"] == sha256_of(rpms["a"])
    assert [d[0] for d in unit["fields"]["requires"]] == ["b"]
    assert unit["fields"]["sourcerpm"] == "a-1.0-1.src.rpm"
    assert [f["relative_path"] for f in unit["artifacts"]] == ["Packages/a/a-1.0-1.noarch.rpm"]


def test_an_upload_that_is_not_an_rpm_makes_no_unit(client, workers):
    client.post(f"{API}/repositories", json={"name": "el", "type": "rpm"})
    task = wait_for_task(client, commit_upload(client, b"not a package\n", type="rpm.package",
                                               repository="el").json()["href"])
    assert task["state"] == "failed" and "not an RPM package" in task["error"]["message"]
    assert client.get(f"{API}/repositories/el").json()["latest_version"] == 0
    assert client.get(f"{API}/content", params={"type": "rpm.package"}).json()["count"] == 0


def test_a_commit_asks_for_a_unit_one_way_only(client, workers, rpms):
    client.post(f"{API}/repositories", json={"name": "web"})
    data = rpms["b"].read_bytes()
    both = commit_upload(client, data, type="rpm.package", relative_path="b.rpm")
    assert both.status_code == 400 and "not both" in both.json()["error"]["message"]
    described = commit_upload(client, data, type="file")
    assert described.status_code == 400 and "not read from their file" in \
        described.json()["error"]["message"]
    wrong = commit_upload(client, data, type="rpm.package", repository="web")
    assert wrong.status_code == 400 and "holds no rpm.package" in wrong.json()["error"]["message"]


# -- dnf against a real pallet serve, and across the air gap ----------------------------------

def cli(server, *args) -> subprocess.CompletedProcess:
    from tests.test_cli import PASSWORD
    env = {k: v for k, v in os.environ.items() if not k.startswith("PALLET_")}
    env.update(PALLET_URL=server.url, PALLET_USERNAME="admin", PALLET_PASSWORD=PASSWORD,
               COLUMNS="200")
    result = subprocess.run([sys.executable, "-m", "pallet.cli.main", *map(str, args)],
                            env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0 and "Traceback" not in result.stderr, result
    return result


@pytest.mark.slow
def test_dnf_installs_and_upgrades_from_a_mirror_and_from_its_copy_across_the_air_gap(
        servers, file_server, tmp_path, rpms):
    require("dnf", "rpm")
    require("modifyrepo_c")
    root = make_repository(tmp_path / "upstream", [rpms["a"], rpms["b"]])
    upstream = file_server(root)
    exports = tmp_path / "exports"
    exports.mkdir()
    gap = {"PALLET_ALLOWED_EXPORT_DIRS": json.dumps([str(exports)]),
           "PALLET_ALLOWED_IMPORT_DIRS": json.dumps([str(exports)]),
           "PALLET_IMPORT_RESERVE_BYTES": "0"}
    mirror = servers.start("mirror", **gap)
    api = api_of(mirror)
    for path, body in (("/remotes", {"name": "el", "url": upstream.url, "type": "rpm",
                                     "policy": "on_demand"}),
                       ("/repositories", {"name": "el", "type": "rpm", "remote": "el",
                                          "autopublish": True}),
                       ("/distributions", {"name": "el", "base_path": "el/9",
                                           "repository": "el"})):
        assert api.post(path, json=body).status_code == 201
    run(api, api.post("/repositories/el/sync", json={}))
    served = f"{mirror.url}/pallet/content/el/9/"

    dnf = Dnf(tmp_path / "root")
    dnf.install(served, "a")  # on demand: the content app fetches a and b from upstream
    assert dnf.installed() == {"a-0:1.0-1.noarch", "b-0:1.0-1.noarch"}

    shutil.rmtree(root)
    make_repository(root, [rpms["a"], rpms["a2"], rpms["b"]], updateinfo_xml=updateinfo(
        [{"id": "PALLET-2024-0001", "type": "security", "severity": "Important",
          "packages": [rpms["a2"]]}]))
    run(api, api.post("/repositories/el/sync", json={}))
    listed = dnf.run(served, "--refresh", "updateinfo", "list").stdout
    assert "PALLET-2024-0001" in listed and "a-2.0-1.noarch" in listed, listed
    dnf.run(served, "--refresh", "upgrade")  # dnf trusts metadata less than a second old
    assert dnf.installed() == {"a-0:2.0-1.noarch", "b-0:1.0-1.noarch"}

    # A package uploaded with the CLI: its header says what it is; a new version serves it.
    c = build_rpm(tmp_path / "local", "c", "3.1", requires=["a >= 2.0"])
    uploaded = cli(mirror, "upload", "rpm", c, "--repository", "el")
    assert "c-3.1-1.noarch" in uploaded.stdout or "name=c" in uploaded.stdout, uploaded.stdout
    dnf.run(served, "--refresh", "install", "c")
    assert "c-0:3.1-1.noarch" in dnf.installed()

    # A frozen set from the mirror (a content view): c and what it needs, solved by libsolv,
    # and the advisory with the package it names; dnf installs c from it alone.
    listed = cli(mirror, "rpm", "packages", "el", "--name", "a").stdout
    assert "a-1.0-1.noarch" in listed and "a-2.0-1.noarch" in listed, listed
    for path, body in (("/repositories", {"name": "frozen", "type": "rpm",
                                          "autopublish": True}),
                       ("/distributions", {"name": "frozen", "base_path": "frozen",
                                           "repository": "frozen"})):
        assert api.post(path, json=body).status_code == 201
    copied = cli(mirror, "rpm", "copy", "frozen", "--from", "el", "--name", "c",
                 "--dependencies").stdout
    assert "2 dependencies" in copied and "created version 1" in copied, copied
    cli(mirror, "rpm", "copy", "frozen", "--from", "el", "--advisory", "PALLET-2024-0001")
    frozen = Dnf(tmp_path / "frozen-root")
    frozen.install(f"{mirror.url}/pallet/content/frozen/", "c")
    assert frozen.installed() == {"a-0:2.0-1.noarch", "b-0:1.0-1.noarch", "c-0:3.1-1.noarch"}
    assert "PALLET-2024-0001" in frozen.run(f"{mirror.url}/pallet/content/frozen/",
                                            "updateinfo", "list", "--all").stdout

    # Across the air gap: export (fetching what on-demand left upstream), import, serve.
    assert api.post("/exporters", json={"name": "out", "path": str(exports),
                                        "repositories": ["el"]}).status_code == 201
    toc = run(api, api.post("/exporters/out/export", json={}))["result"]["toc"]
    upstream.stop()
    site = servers.start("site", **gap)
    down = api_of(site)
    assert down.post("/importers", json={"name": "in", "mapping": {"el": "el"},
                                         "create_repositories": True}).status_code == 201
    run(down, down.post("/importers/in/import", json={"path": toc}))
    assert down.get("/repositories/el").json()["type"] == "rpm"
    digests = [client.get(client.get("/repositories/el").json()["latest_version_href"]
                          .removeprefix(API)).json()["digest"] for client in (api, down)]
    assert digests[0] == digests[1]
    if down.get("/distributions/el").status_code == 404:
        assert down.post("/distributions", json={"name": "el", "base_path": "el/9",
                                                 "repository": "el"}).status_code == 201
        if down.get("/repositories/el").json().get("autopublish") is False:
            run(down, down.post("/publications", json={"repository": "el"}))
    fresh = Dnf(tmp_path / "site-root")
    fresh.install(f"{site.url}/pallet/content/el/9/", "c")
    assert "PALLET-2024-0001" in fresh.run(f"{site.url}/pallet/content/el/9/", "updateinfo",
                                           "list", "--all").stdout
    assert fresh.installed() == {"a-0:2.0-1.noarch", "b-0:1.0-1.noarch", "c-0:3.1-1.noarch"}


@pytest.mark.slow
def test_a_yum_repository_replicates_unchanged_full_then_incremental(servers, file_server,
                                                                   tmp_path, rpms):
    """Replication carries packages, advisories, groups and modules with no rpm code in
    replication/: the downstream's digest is the upstream's, version after version."""
    from tests.rpm_tools import comps, modules

    root = make_repository(tmp_path / "upstream", [rpms["a"], rpms["b"]],
                           comps_xml=comps("tools", ["a", "b"]),
                           modules_yaml=modules("tools", "1", [rpms["b"]]))
    upstream = file_server(root)
    up, down = servers.start("up"), servers.start("down")
    source, target = api_of(up), api_of(down)
    assert source.post("/remotes", json={"name": "el", "url": upstream.url, "type": "rpm",
                                         "policy": "immediate"}).status_code == 201
    assert source.post("/repositories", json={"name": "el", "type": "rpm", "remote": "el",
                                              "autopublish": True}).status_code == 201
    run(source, source.post("/repositories/el/sync", json={}))
    from tests.test_cli import PASSWORD
    assert target.post("/upstreams", json={"name": "up", "base_url": up.url,
                                           "username": "admin", "password": PASSWORD,
                                           "repositories": ["el"]}).status_code == 201

    def same() -> dict:
        run(target, target.post("/upstreams/up/replicate"))
        versions = [c.get(c.get("/repositories/el").json()["latest_version_href"]
                          .removeprefix(API)).json() for c in (source, target)]
        assert versions[0]["digest"] == versions[1]["digest"]
        present = [{t: c["present"] for t, c in v["counts"].items()} for v in versions]
        assert present[0] == present[1]
        return versions[1]

    first = same()
    assert {"rpm.package", "rpm.group", "rpm.module"} <= set(first["counts"])
    shutil.rmtree(root)
    make_repository(root, [rpms["a"], rpms["a2"], rpms["b"]], updateinfo_xml=updateinfo(
        [{"id": "PALLET-2024-0002", "type": "bugfix", "packages": [rpms["a2"]]}]),
        comps_xml=comps("tools", ["a", "b"]), modules_yaml=modules("tools", "1", [rpms["b"]]))
    run(source, source.post("/repositories/el/sync", json={}))
    second = same()
    assert second["counts"]["rpm.advisory"]["present"] == 1
    assert second["counts"]["rpm.package"]["present"] == 3


@pytest.mark.slow
def test_dnf_installs_from_a_mirror_of_a_sha1_repository(servers, file_server, tmp_path, rpms):
    require("dnf", "rpm")
    root = make_repository(tmp_path / "upstream", [rpms["a"], rpms["b"]],
                           extra_args=["--checksum", "sha1"])
    mirror = servers.start("mirror")
    api = api_of(mirror)
    for path, body in (("/remotes", {"name": "old", "url": file_server(root).url,
                                     "type": "rpm", "policy": "immediate"}),
                       ("/repositories", {"name": "old", "type": "rpm", "remote": "old",
                                          "autopublish": True}),
                       ("/distributions", {"name": "old", "base_path": "old/5",
                                           "repository": "old"})):
        assert api.post(path, json=body).status_code == 201
    run(api, api.post("/repositories/old/sync", json={}))
    served = f"{mirror.url}/pallet/content/old/5/"
    repomd = httpx.get(served + "repodata/repomd.xml").text
    assert '<checksum type="sha256">' in repomd and 'type="sha1"' not in repomd, repomd

    dnf = Dnf(tmp_path / "root")
    dnf.install(served, "a")
    assert dnf.installed() == {"a-0:1.0-1.noarch", "b-0:1.0-1.noarch"}
