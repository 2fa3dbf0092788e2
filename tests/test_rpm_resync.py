"""Re-syncing a yum repository: the packages the server holds are looked up by their key
and never rebuilt, yet what changed about them upstream (where a file lies, whether its
bytes are stored) still reaches the server."""

from __future__ import annotations

import shutil
import subprocess

import pytest
from sqlalchemy import select

from pallet.content.models import Content, ContentArtifact
from pallet.plugins.rpm import remote as rpm_remote
from pallet.remotes.models import RemoteArtifact
from tests.http_fixtures import file_server  # noqa: F401 - the fixture
from tests.rpm_tools import build_rpm, require
from tests.test_rpm import crafted, packages_of, refused, rpms, settings, sync, \
    yum_repository  # noqa: F401 - fixtures too


@pytest.fixture
def built(monkeypatch) -> list[str]:
    """The names of the packages whose fields the sync builds."""
    names: list[str] = []
    real = rpm_remote.fields_of

    def counting(package):
        names.append(package.name)
        return real(package)

    monkeypatch.setattr(rpm_remote, "fields_of", counting)
    return names


def test_a_resync_builds_only_the_packages_it_does_not_hold(client, workers, file_server,
                                                            tmp_path, rpms, built):
    root = yum_repository(tmp_path / "up", rpms["a"], rpms["b"])
    server = file_server(root)
    assert sync(client, server.url, policy="on_demand")["result"]["version"] == 1
    assert sorted(built) == ["a", "b"]
    built.clear()

    shutil.rmtree(root)
    yum_repository(root, rpms["a"], rpms["a2"], rpms["b"])
    task = sync(client, server.url)
    assert task["state"] == "completed", task["error"]
    assert task["result"]["version"] == 2 and task["result"]["units"] == 3
    assert built == ["a"]  # a 2.0 only: a 1.0 and b were held
    units = packages_of(client)
    assert set(units) == {"a-1.0.noarch", "a-2.0.noarch", "b-1.0.noarch"}
    assert [d[0] for d in units["a-2.0.noarch"]["fields"]["requires"]] == ["b"]


def test_a_held_package_moved_upstream_is_fetched_from_its_new_place(client, workers,
                                                                     file_server, tmp_path,
                                                                     rpms, runtime, built):
    require("createrepo_c")
    root = tmp_path / "up"
    (root / "old").mkdir(parents=True)
    shutil.copy(rpms["b"], root / "old")
    subprocess.run(["createrepo_c", "--quiet", "--no-database", str(root)], check=True)
    server = file_server(root)
    assert sync(client, server.url, policy="on_demand")["state"] == "completed"

    shutil.rmtree(root)
    (root / "new").mkdir(parents=True)
    shutil.copy(rpms["b"], root / "new")
    subprocess.run(["createrepo_c", "--quiet", "--no-database", str(root)], check=True)
    built.clear()
    task = sync(client, server.url)
    assert task["state"] == "completed", task["error"]
    assert task["result"]["version"] is None and built == []  # the same package, held
    with runtime.db.read() as session:
        urls = session.scalars(select(RemoteArtifact.url)).all()
    assert [url.removeprefix(server.url.rstrip("/")) for url in urls] == \
        [f"/new/{rpms['b'].name}"]


def test_an_immediate_resync_stores_the_bytes_of_packages_held_without_them(
        client, workers, file_server, tmp_path, rpms, runtime, built):
    server = file_server(yum_repository(tmp_path / "up", rpms["a"], rpms["b"]))
    assert sync(client, server.url, policy="on_demand")["state"] == "completed"
    assert client.patch("/api/v1/remotes/el", json={"policy": "immediate"}).status_code == 200
    built.clear()
    task = sync(client, server.url)
    assert task["state"] == "completed", task["error"]
    assert task["result"]["downloaded"] == 2 and built == []
    with runtime.db.read() as session:
        linked = session.execute(
            select(ContentArtifact.relative_path, ContentArtifact.artifact_id)
            .join(Content, Content.id == ContentArtifact.content_id)
            .where(Content.type == "rpm.package")).all()
    assert len(linked) == 2 and all(artifact_id is not None for _, artifact_id in linked)
    response = client.get("/api/v1/repositories/el")
    assert response.json()["latest_version"] == 1  # the same content: no new version


@pytest.mark.parametrize("field, value", [("epoch", "x"), ("pkgId", "A" * 63),
                                          ("name", "../x")])
def test_a_package_whose_key_is_not_valid_is_refused_naming_primary(
        client, workers, file_server, tmp_path, runtime, field, value):
    server = file_server(tmp_path)
    crafted(tmp_path / "repo", lambda package: setattr(package, field, value))
    task = refused(client, runtime, server.url + "repo/", "primary.xml.gz")
    wrong = {"pkgId": "pkgid"}.get(field, field)
    assert f": {wrong}:" in task["error"]["message"], task["error"]
