"""The rpm type's comps, modules and verbatim metadata: yum repositories made by createrepo_c
and modifyrepo_c, synced over HTTP on 127.0.0.1, published, read back by createrepo_c and
libcomps, and used by the real dnf (group and module commands); bad comps and modules fail
cleanly."""

from __future__ import annotations

import gzip
import hashlib
import json
from pathlib import Path

import createrepo_c as cr
import httpx
import pytest

from pallet.plugin import Reference
from pallet.plugins.rpm import advisory, comps, modules
from tests.conftest import make_settings, wait_for_task
from tests.http_fixtures import file_server  # noqa: F401 - the fixture
from tests.servers import api_of, completed as run, servers  # noqa: F401 - the fixture
from tests.rpm_tools import Dnf, add_metadata, build_rpm, make_repository, require
from tests.rpm_tools import comps as comps_xml
from tests.rpm_tools import modules as modules_yaml

API = "/api/v1"
PRODUCTID = b"-----BEGIN CERTIFICATE-----\npallet test product\n-----END CERTIFICATE-----\n"

COMPS = """\
<?xml version="1.0" encoding="UTF-8"?>
<!DOCTYPE comps PUBLIC "-//Red Hat, Inc.//DTD Comps info//EN" "comps.dtd">
<comps>
  <group>
    <id>pallet-tools</id>
    <name>Pallet tools</name>
    <name xml:lang="de">Pallet-Werkzeuge</name>
    <description>Tools for tests</description>
    <description xml:lang="de">Werkzeuge</description>
    <default>true</default>
    <uservisible>true</uservisible>
    <display_order>10</display_order>
    <packagelist>
      <packagereq type="mandatory">a</packagereq>
      <packagereq type="default">b</packagereq>
      <packagereq type="optional">c</packagereq>
      <packagereq type="conditional" requires="a">c</packagereq>
    </packagelist>
  </group>
  <group>
    <id>pallet-hidden</id>
    <name>Hidden</name>
    <description>Not shown</description>
    <default>false</default>
    <uservisible>false</uservisible>
    <biarchonly>true</biarchonly>
    <langonly>de</langonly>
    <packagelist>
      <packagereq type="mandatory">b</packagereq>
    </packagelist>
  </group>
  <category>
    <id>pallet-category</id>
    <name>Pallet category</name>
    <description>Everything</description>
    <display_order>3</display_order>
    <grouplist>
      <groupid>pallet-tools</groupid>
    </grouplist>
  </category>
  <environment>
    <id>pallet-environment</id>
    <name>Pallet environment</name>
    <description>A whole system</description>
    <display_order>1</display_order>
    <grouplist>
      <groupid>pallet-tools</groupid>
    </grouplist>
    <optionlist>
      <groupid default="true">pallet-hidden</groupid>
    </optionlist>
  </environment>
  <langpacks>
    <match name="a" install="a-langpack-%s"/>
  </langpacks>
</comps>
"""

OBSOLETES = """\
---
document: modulemd-obsoletes
version: 1
data:
  modified: 2024-01-01T00:00Z
  module: old
  stream: "1"
  message: old:1 is no more  # a comment upstream wrote
...
"""


@pytest.fixture(scope="module")
def rpms(tmp_path_factory) -> dict[str, Path]:
    """a requires b; c; t 1.0 (the module tools:1's) and t 2.0 (not in any module)."""
    require("rpmbuild")
    folder = tmp_path_factory.mktemp("rpms")
    return {"a": build_rpm(folder, "a", "1.0", requires=["b >= 1.0"]),
            "b": build_rpm(folder, "b", "1.0"),
            "c": build_rpm(folder, "c", "1.0"),
            "t1": build_rpm(folder, "t", "1.0"),
            "t2": build_rpm(folder, "t", "2.0")}


@pytest.fixture
def settings(tmp_path, database_url):
    return make_settings(tmp_path, database_url, max_index_size=1 << 20)


def upstream(root: Path, rpms: dict[str, Path], *, comps_text: str | None = COMPS,
             modules_text: str | None = None, productid: bool = True) -> Path:
    """A createrepo_c repository of every package, with comps, modules and a productid."""
    if modules_text is None:
        modules_text = modules_yaml("tools", "1", [rpms["t1"]]) + OBSOLETES
    make_repository(root, list(rpms.values()), comps_xml=comps_text,
                    modules_yaml=modules_text)
    if productid:
        add_metadata(root, "productid", PRODUCTID, mdtype="productid")
    return root


def sync(client, url: str, *, name: str = "el", **body) -> dict:
    if client.get(f"{API}/remotes/{name}").status_code == 404:
        assert client.post(f"{API}/remotes", json={
            "name": name, "url": url, "type": "rpm", "policy": "immediate",
            "max_retries": 0}).status_code == 201
        assert client.post(f"{API}/repositories", json={
            "name": name, "type": "rpm", "remote": name, "autopublish": True}
        ).status_code == 201
    response = client.post(f"{API}/repositories/{name}/sync", json=body)
    assert response.status_code == 202, response.text
    return wait_for_task(client, response.json()["href"])


def units_of(client, type_: str, name: str = "el") -> list[dict]:
    return client.get(f"{API}/content", params={"repository": name, "type": type_,
                                                "limit": 1000}).json()["results"]


# -- the plugin's declarations ------------------------------------------------------------

def test_groups_modules_and_advisories_name_their_packages():
    group = comps.Group(id="g", packages=[{"name": "a", "type": "mandatory"},
                                          {"name": "b", "type": "conditional",
                                           "requires": "a"},
                                          {"name": "a", "type": "optional"}])
    assert list(comps.group_references(group)) == [
        Reference("rpm.package", {"name": "a"}, exact=False),
        Reference("rpm.package", {"name": "b"}, exact=False)]
    module = modules.Module(name="m", stream="1", text="---\n...\n",
                            artifacts=["t-0:1.0-1.noarch", "u-2:3.1-4.el9.x86_64"])
    assert [r.fields for r in modules.module_references(module)] == [
        {"name": "t", "epoch": "0", "version": "1.0", "release": "1", "arch": "noarch"},
        {"name": "u", "epoch": "2", "version": "3.1", "release": "4.el9", "arch": "x86_64"}]
    assert all(r.exact and r.type == "rpm.package" for r in modules.module_references(module))
    erratum = advisory.Advisory(id="E-1", collections=[{"packages": [
        {"name": "a", "epoch": None, "version": "2.0", "release": "1", "arch": "noarch"}]}])
    assert list(advisory.references(erratum)) == [Reference("rpm.package", {
        "name": "a", "epoch": "0", "version": "2.0", "release": "1", "arch": "noarch"})]

    from pallet.plugins.rpm import plugin
    types = {t.name: t for t in plugin.content_types}
    assert types["rpm.package"].indexes == (("name", "arch"),)
    assert set(plugin.repository_types[0].content_types) == set(types)


def test_a_modules_yaml_keeps_each_document_verbatim(tmp_path):
    stream = modules_yaml("tools", "1", ["t-0:1.0-1.noarch"], arch="x86_64")
    translations = "document: modulemd-translations\nversion: 1\ndata: {module: x}\n"
    (tmp_path / "modules.yaml").write_text("# upstream's own comment\n" + stream + OBSOLETES
                                           + "---\n" + translations)  # no "..." at the end
    read = list(modules.read(tmp_path / "modules.yaml", "modules.yaml"))
    assert [kind for kind, _ in read] == ["rpm.module", "rpm.module_defaults",
                                          "rpm.module_document", "rpm.module_document"]
    module = read[0][1]
    assert (module.name, module.stream, module.version, module.context, module.arch) == (
        "tools", "1", "20240101000000", "c0ffee42", "x86_64")
    assert module.artifacts == ["t-0:1.0-1.noarch"]
    assert read[2][1].text == OBSOLETES  # comments and all
    assert read[3][1].text == f"---\n{translations}...\n"  # the end it lacked added
    written = modules.modules_yaml([(kind, unit.model_dump()) for kind, unit in read])
    assert written == stream + OBSOLETES + f"---\n{translations}...\n"


# -- sync and publish ---------------------------------------------------------------------

def test_comps_modules_and_productid_sync_with_every_field(client, workers, file_server,
                                                          tmp_path, rpms):
    require("modifyrepo_c")
    root = upstream(tmp_path / "up", rpms)
    task = sync(client, file_server(root).url)
    assert task["state"] == "completed", task["error"]

    groups = {u["fields"]["id"]: u["fields"] for u in units_of(client, "rpm.group")}
    assert set(groups) == {"pallet-tools", "pallet-hidden"}
    tools = groups["pallet-tools"]
    assert (tools["name"], tools["name_by_lang"], tools["desc_by_lang"]) == (
        "Pallet tools", {"de": "Pallet-Werkzeuge"}, {"de": "Werkzeuge"})
    assert (tools["default"], tools["uservisible"], tools["display_order"]) == (True, True, 10)
    assert [(p["name"], p["type"], p["requires"]) for p in tools["packages"]] == [
        ("a", "mandatory", None), ("b", "default", None), ("c", "optional", None),
        ("c", "conditional", "a")]
    hidden = groups["pallet-hidden"]
    assert (hidden["uservisible"], hidden["biarchonly"], hidden["langonly"]) == (
        False, True, "de")
    [category] = units_of(client, "rpm.category")
    assert category["fields"]["group_ids"] == ["pallet-tools"]
    [environment] = units_of(client, "rpm.environment")
    assert environment["fields"]["group_ids"] == ["pallet-tools"]
    assert environment["fields"]["option_ids"] == [{"id": "pallet-hidden", "default": True}]
    [langpacks] = units_of(client, "rpm.langpacks")
    assert langpacks["fields"]["matches"] == [["a", "a-langpack-%s"]]

    [module] = units_of(client, "rpm.module")
    assert (module["fields"]["name"], module["fields"]["stream"]) == ("tools", "1")
    assert module["fields"]["artifacts"] == ["t-0:1.0-1.noarch"]
    [defaults] = units_of(client, "rpm.module_defaults")
    assert (defaults["fields"]["module"], defaults["fields"]["stream"]) == ("tools", "1")
    [obsoletes] = units_of(client, "rpm.module_document")
    assert obsoletes["fields"]["text"] == OBSOLETES

    [productid] = units_of(client, "rpm.metadata")
    stored = next((root / "repodata").glob("*productid*"))
    assert productid["fields"]["type"] == "productid"
    assert productid["fields"]["sha256"] == hashlib.sha256(stored.read_bytes()).hexdigest()
    assert [a["relative_path"] for a in productid["artifacts"]] == [
        f"repodata/{stored.name}"]


def published(client, runtime, folder: Path) -> dict[str, cr.RepomdRecord]:
    """The newest publication's metadata and kept files written under `folder`: its
    repomd records by type."""
    publication = client.get(f"{API}/publications",
                             params={"repository": "el"}).json()["results"][0]
    files = {f["relative_path"]: f["sha256"] for f in publication["metadata_files"]}
    for unit in units_of(client, "rpm.metadata"):
        files |= {a["relative_path"]: a["sha256"] for a in unit["artifacts"]}
    for path, sha256 in files.items():
        (folder / path).parent.mkdir(parents=True, exist_ok=True)
        with runtime.storage.open(sha256) as stream:
            (folder / path).write_bytes(stream.read())
    return {r.type: r for r in cr.Repomd(str(folder / "repodata/repomd.xml")).records}


def check_records(records: dict[str, cr.RepomdRecord], read) -> None:
    """Each record's checksum and size is that of its file (`read(href) -> bytes`), and
    its open checksum that of the file decompressed."""
    for record in records.values():
        data = read(record.location_href)
        assert record.checksum_type == "sha256", record.type
        assert hashlib.sha256(data).hexdigest() == record.checksum, record.type
        assert record.size == len(data), record.type
        if record.checksum_open:
            plain = gzip.decompress(data) if record.location_href.endswith(".gz") else data
            assert hashlib.new(record.checksum_open_type, plain).hexdigest() == \
                record.checksum_open, record.type


def test_the_publication_lists_comps_modules_and_productid_as_upstream(client, workers,
                                                                        file_server, tmp_path,
                                                                        rpms, runtime):
    require("modifyrepo_c")
    modules_text = modules_yaml("tools", "1", [rpms["t1"]]) + OBSOLETES
    root = upstream(tmp_path / "up", rpms, modules_text=modules_text)
    assert sync(client, file_server(root).url)["state"] == "completed"
    out = tmp_path / "published"
    records = published(client, runtime, out)
    assert {"primary", "filelists", "other", "group", "group_gz", "modules",
            "productid"} <= set(records)
    check_records(records, lambda href: (out / href).read_bytes())

    # modules.yaml is upstream's, byte for byte; comps.xml has upstream's groups.
    assert gzip.decompress((out / records["modules"].location_href).read_bytes()).decode() \
        == modules_text
    (tmp_path / "comps.xml").write_text(COMPS)
    def read(path: Path) -> list:
        return sorted((kind, unit.model_dump_json()) for kind, unit in comps.read(path, "-"))
    assert read(out / records["group"].location_href) == read(tmp_path / "comps.xml")
    assert gzip.decompress((out / records["group_gz"].location_href).read_bytes()) == \
        (out / records["group"].location_href).read_bytes()
    # the productid file is upstream's, served where repomd.xml says
    upstream_record = {r.type: r for r in cr.Repomd(str(root / "repodata/repomd.xml"))
                       .records}["productid"]
    assert (out / records["productid"].location_href).read_bytes() == \
        (root / upstream_record.location_href).read_bytes()
    assert records["productid"].checksum_open == upstream_record.checksum_open


def test_a_resync_replaces_changed_groups_and_drops_what_upstream_dropped(client, workers,
                                                                         file_server,
                                                                         tmp_path, rpms):
    require("modifyrepo_c")
    root = upstream(tmp_path / "up", rpms)
    server = file_server(root)
    assert sync(client, server.url)["state"] == "completed"
    upstream(root, rpms, comps_text=comps_xml("pallet-tools", ["a", "c"], name="Renamed"),
             modules_text=modules_yaml("tools", "1", [rpms["t1"]], default=False),
             productid=False)
    assert sync(client, server.url)["result"]["version"] == 2
    groups = {u["fields"]["id"]: u["fields"]["name"] for u in units_of(client, "rpm.group")}
    assert groups == {"pallet-tools": "Renamed", "pallet-hidden": "Hidden"}  # one per id
    assert len(units_of(client, "rpm.module")) == 1 and units_of(client, "rpm.metadata")

    assert sync(client, server.url, mirror=True)["result"]["version"] == 3
    [group] = units_of(client, "rpm.group")
    assert (group["fields"]["id"], group["fields"]["name"]) == ("pallet-tools", "Renamed")
    for gone in ("rpm.category", "rpm.environment", "rpm.langpacks", "rpm.module_defaults",
                 "rpm.module_document", "rpm.metadata"):
        assert units_of(client, gone) == [], gone


def test_a_file_announced_by_another_checksum_is_kept_by_its_sha256(client, workers,
                                                                    file_server, tmp_path,
                                                                    rpms, runtime):
    require("modifyrepo_c")
    root = upstream(tmp_path / "up", rpms, productid=False)
    kept = add_metadata(root, "appdata.xml", b"<components/>\n", mdtype="appdata",
                        compress=None, checksum="sha512")
    assert sync(client, file_server(root).url)["state"] == "completed"
    [unit] = units_of(client, "rpm.metadata")
    assert unit["fields"]["sha256"] == hashlib.sha256(kept.read_bytes()).hexdigest()
    out = tmp_path / "published"
    record = published(client, runtime, out)["appdata"]
    assert (out / record.location_href).read_bytes() == kept.read_bytes()
    assert (record.checksum_type, record.checksum) == ("sha256", unit["fields"]["sha256"])


# -- bad input: a clear task error, no version --------------------------------------------

ENTITY_COMPS = """\
<?xml version="1.0"?>
<!DOCTYPE comps [<!ENTITY boom "boom">]>
<comps><group><id>&boom;</id><name>x</name><description>x</description></group></comps>
"""


@pytest.mark.parametrize("comps_text, modules_text, words", [
    ("this is not <xml", None, ["comps.xml", "not well-formed XML"]),
    (ENTITY_COMPS, None, ["comps.xml", "DTD", "refused"]),
    (None, "- a\n- b\n", ["modules.yaml", "not a modulemd document"]),
    (None, "document: modulemd\nversion: 2\ndata: [unclosed\n", ["modules.yaml", "not YAML"]),
    (None, "---\ndocument: modulemd\nversion: 2\ndata: {name: m}\n...\n",
     ["modules.yaml", "has no stream"]),
    (None, "---\ndocument: modulemd\nversion: 2\ndata: {name: m, stream: s,\n"
           "  artifacts: {rpms: [not-a-nevra]}}\n...\n", ["modules.yaml", "not a NEVRA"]),
    (None, "---\ndocument: modulemd\nversion: 2\ndata:\n  name: &n m\n  stream: *n\n...\n",
     ["modules.yaml", "YAML alias", "dnf cannot read"]),
], ids=["comps-not-xml", "comps-entity", "modules-not-mappings", "modules-not-yaml",
        "module-without-stream", "module-artifact-not-nevra", "modules-alias"])
def test_bad_comps_or_modules_fail_the_sync_clearly(client, workers, file_server, tmp_path,
                                                    rpms, comps_text, modules_text, words):
    require("modifyrepo_c")
    root = tmp_path / "up"
    make_repository(root, [rpms["a"], rpms["b"]], comps_xml=comps_text,
                    modules_yaml=modules_text)
    task = sync(client, file_server(root).url)
    assert task["state"] == "failed", task
    message = task["error"]["message"]
    assert all(word in message for word in words), message
    assert "Traceback" not in message
    assert client.get(f"{API}/repositories/el").json()["latest_version"] == 0


@pytest.mark.parametrize("href", ["repodata/repomd.xml", "../productid.gz",
                                  "repodata/.hidden"])
def test_a_kept_file_pallet_cannot_serve_under_repodata_is_refused(client, workers,
                                                                   file_server, tmp_path,
                                                                   rpms, href):
    require("modifyrepo_c")
    root = upstream(tmp_path / "up", rpms)
    repomd = root / "repodata" / "repomd.xml"
    text = repomd.read_text()
    name = next((root / "repodata").glob("*productid*")).name
    repomd.write_text(text.replace(f'href="repodata/{name}"', f'href="{href}"'))
    task = sync(client, file_server(root).url)
    assert task["state"] == "failed", task
    assert "productid" in task["error"]["message"], task["error"]
    assert client.get(f"{API}/repositories/el").json()["latest_version"] == 0


# -- dnf against a real pallet serve, and across the air gap ------------------------------

def served_records(url: str, folder: Path) -> dict[str, cr.RepomdRecord]:
    """The repomd records dnf reads at `url`, checked against the files served there."""
    def read(href: str) -> bytes:
        response = httpx.get(url + href, timeout=30)
        assert response.status_code == 200, (href, response.status_code)
        return response.content
    folder.mkdir(parents=True)
    (folder / "repomd.xml").write_bytes(read("repodata/repomd.xml"))
    records = {r.type: r for r in cr.Repomd(str(folder / "repomd.xml")).records}
    check_records(records, read)
    return records


def digest_of(api: httpx.Client) -> str:
    href = api.get("/repositories/el").json()["latest_version_href"].removeprefix(API)
    return api.get(href).json()["digest"]


def types_of(api: httpx.Client) -> dict[str, int]:
    counts = {}
    for kind in ("rpm.group", "rpm.category", "rpm.environment", "rpm.langpacks",
                 "rpm.module", "rpm.module_defaults", "rpm.module_document", "rpm.metadata"):
        counts[kind] = api.get("/content", params={"repository": "el", "type": kind}
                               ).json()["count"]
    return counts


@pytest.mark.slow
def test_dnf_installs_groups_and_module_streams_from_a_mirror_and_its_copy(
        servers, file_server, tmp_path, rpms):
    require("dnf", "rpm", "modifyrepo_c")
    root = upstream(tmp_path / "upstream", rpms)
    source = file_server(root)
    exports = tmp_path / "exports"
    exports.mkdir()
    gap = {"PALLET_ALLOWED_EXPORT_DIRS": json.dumps([str(exports)]),
           "PALLET_ALLOWED_IMPORT_DIRS": json.dumps([str(exports)]),
           "PALLET_IMPORT_RESERVE_BYTES": "0"}
    mirror = servers.start("mirror", **gap)
    api = api_of(mirror)
    for path, body in (("/remotes", {"name": "el", "url": source.url, "type": "rpm",
                                     "policy": "on_demand"}),
                       ("/repositories", {"name": "el", "type": "rpm", "remote": "el",
                                          "autopublish": True}),
                       ("/distributions", {"name": "el", "base_path": "el/9",
                                           "repository": "el"})):
        assert api.post(path, json=body).status_code == 201
    run(api, api.post("/repositories/el/sync", json={}))
    served = f"{mirror.url}/pallet/content/el/9/"
    # on demand: the productid is fetched from upstream when asked for
    records = served_records(served, tmp_path / "mirror-repomd")
    assert {"group", "group_gz", "modules", "productid"} <= set(records)

    dnf = Dnf(tmp_path / "root")
    listed = dnf.run(served, "group", "list", "--hidden").stdout
    assert "Pallet tools" in listed and "Hidden" in listed, listed
    dnf.run(served, "group", "install", "pallet-tools")
    # a mandatory, b default, c optional but also conditional on a, which the group installs
    assert dnf.installed() == {"a-0:1.0-1.noarch", "b-0:1.0-1.noarch", "c-0:1.0-1.noarch"}

    modular = Dnf(tmp_path / "modular-root")
    streams = modular.run(served, "module", "list").stdout
    assert "tools" in streams and "1 [d]" in streams, streams
    modular.run(served, "module", "enable", "tools:1")
    modular.run(served, "module", "install", "tools:1/default")
    assert modular.installed() == {"t-0:1.0-1.noarch"}  # the stream's t, not the newer 2.0

    # Across the air gap: export, import into a second Pallet, serve, and dnf again.
    assert api.post("/exporters", json={"name": "out", "path": str(exports),
                                        "repositories": ["el"]}).status_code == 201
    toc = run(api, api.post("/exporters/out/export", json={}))["result"]["toc"]
    source.stop()
    site = servers.start("site", **gap)
    down = api_of(site)
    assert down.post("/importers", json={"name": "in", "mapping": {"el": "el"},
                                         "create_repositories": True}).status_code == 201
    run(down, down.post("/importers/in/import", json={"path": toc}))
    assert digest_of(down) == digest_of(api)
    assert types_of(down) == types_of(api)
    if down.get("/distributions/el").status_code == 404:
        assert down.post("/distributions", json={"name": "el", "base_path": "el/9",
                                                 "repository": "el"}).status_code == 201
        if down.get("/repositories/el").json().get("autopublish") is False:
            run(down, down.post("/publications", json={"repository": "el"}))
    there = f"{site.url}/pallet/content/el/9/"
    assert {"group", "group_gz", "modules", "productid"} <= set(
        served_records(there, tmp_path / "site-repomd"))
    fresh = Dnf(tmp_path / "site-root")
    fresh.run(there, "group", "install", "pallet-tools")
    fresh.run(there, "module", "install", "tools:1/default")
    assert fresh.installed() == {"a-0:1.0-1.noarch", "b-0:1.0-1.noarch", "c-0:1.0-1.noarch",
                                 "t-0:1.0-1.noarch"}


def test_an_advisory_naming_too_many_packages_is_refused():
    from pallet.errors import Invalid
    from pallet.plugins.rpm import advisory

    many = [{"name": f"p{i}", "version": "1", "release": "1", "arch": "noarch"}
            for i in range(advisory.MAX_PACKAGES + 1)]
    with pytest.raises(Invalid, match="names 20001 packages"):
        advisory.checked({"id": "BIG", "collections": [{"packages": many}]}, "updateinfo.xml")
    assert advisory.checked({"id": "OK", "collections": [{"packages": many[:10]}]}, "x").id == "OK"
