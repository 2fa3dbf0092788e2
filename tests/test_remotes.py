"""Remotes through the API: create, list, show, update, delete; every field validated; secrets
never shown. And `pallet remote` / `pallet repository sync` against a real server."""

from __future__ import annotations

import json
import subprocess

import pytest
from sqlalchemy import select

from pallet.remotes.models import Remote
from pallet.plugins.file import manifest_url
from pallet.repositories.models import Repository
from tests.conftest import make_settings, wait_for_task
from tests.http_fixtures import file_server, make_tls, write_repository  # noqa: F401
from tests.test_api import assert_error
# The CLI fixtures: a real `pallet serve` for this module, and the `pallet` command.
from tests.test_cli import cli_env, pallet, pallet_json, server, server_database  # noqa: F401

SECRETS = ("password", "proxy_password", "client_key")


@pytest.fixture
def allowed(tmp_path):
    directory = tmp_path / "allowed"
    (directory / "tree").mkdir(parents=True)
    return directory


@pytest.fixture
def settings(tmp_path, database_url, allowed):
    return make_settings(tmp_path, database_url, allowed_import_dirs=[allowed])


@pytest.fixture(scope="module")
def tls(tmp_path_factory):
    return make_tls(tmp_path_factory.mktemp("tls"))


def create(client, name="up", url="https://mirror.example/repo/", **fields):
    return client.post("/api/v1/remotes", json={"name": name, "url": url, **fields})


def test_create_show_list_update(client, tls):
    response = create(client, username="mirror", password="s3cret", ca_cert=tls.ca_cert,
                      client_cert=tls.client_cert, client_key=tls.client_key,
                      proxy_url="http://proxy.example:3128", proxy_username="p",
                      proxy_password="proxy-s3cret", headers={"X-Token": "abc"},
                      policy="on_demand", download_concurrency=4, total_timeout=600)
    assert response.status_code == 201, response.text
    created = response.json()
    assert created["href"] == "/api/v1/remotes/up" and created["type"] == "file"
    assert (created["policy"], created["mirror"], created["download_concurrency"],
            created["max_retries"], created["total_timeout"]) == ("on_demand", False, 4, 3, 600)
    assert created["password_set"] and created["client_key_set"] and \
        created["proxy_password_set"]
    assert created["headers"] == {"X-Token": "abc"} and "BEGIN CERTIFICATE" in \
        created["ca_cert"]
    assert created["options"] == {}  # file remotes take no sync options
    for answer in (created, client.get("/api/v1/remotes/up").json(),
                   client.get("/api/v1/remotes").json()["results"][0]):
        text = json.dumps(answer)
        assert "s3cret" not in text and "PRIVATE KEY" not in text
        assert not set(SECRETS) & set(answer)

    listed = client.get("/api/v1/remotes?name_contains=u").json()
    assert listed["count"] == 1 and listed["results"][0]["name"] == "up"
    assert client.get("/api/v1/remotes?type=other").json()["count"] == 0

    updated = client.patch("/api/v1/remotes/up", json={
        "name": "renamed", "password": None, "mirror": True, "headers": {},
        "client_cert": None, "client_key": None, "tls_validation": False}).json()
    assert updated["name"] == "renamed" and updated["mirror"] is True
    assert not updated["password_set"] and not updated["client_key_set"]
    assert updated["username"] == "mirror" and updated["headers"] == {}
    assert updated["proxy_password_set"] and updated["download_concurrency"] == 4
    assert_error(client.get("/api/v1/remotes/up"), 404, "not_found")


def test_names_are_unique_and_required_fields_stay(client):
    assert create(client).status_code == 201
    assert_error(create(client), 409, "conflict")
    assert create(client, name="other").status_code == 201
    assert_error(client.patch("/api/v1/remotes/other", json={"name": "up"}), 409, "conflict")
    for field in ("url", "policy", "mirror", "read_timeout", "headers"):
        error = assert_error(client.patch("/api/v1/remotes/up", json={field: None}), 400,
                             "invalid")
        assert "cannot be cleared" in error["message"]
    assert_error(client.patch("/api/v1/remotes/up", json={"type": "file"}), 400, "invalid")
    assert_error(client.patch("/api/v1/remotes/nope", json={"mirror": True}), 404, "not_found")


@pytest.mark.parametrize("fields, words", [
    ({"url": "ftp://mirror.example/repo/"}, ["use http, https, file"]),
    ({"url": "mirror.example/repo/"}, ["use http"]),
    ({"url": "https:///repo/"}, ["no host"]),
    ({"url": "https://user:pw@mirror.example/"}, ["credentials"]),
    ({"url": "https://mirror.example/a b"}, ["spaces"]),
    ({"url": "https://mirror.example:99999/"}, ["Port"]),
    ({"url": "file:///etc/"}, ["allowed import director"]),
    ({"url": "file://otherhost/srv/"}, ["host"]),
    ({"policy": "sometimes"}, ["policy"]),
    ({"name": "bad name"}, ["not allowed"]),
    ({"type": "nope"}, ["unknown repository type"]),
    ({"download_concurrency": 0}, ["download_concurrency"]),
    ({"download_concurrency": 65}, ["download_concurrency"]),
    ({"max_retries": 21}, ["max_retries"]),
    ({"connect_timeout": 0}, ["connect_timeout"]),
    ({"read_timeout": 1e9}, ["read_timeout"]),
    ({"total_timeout": -1}, ["total_timeout"]),
    ({"headers": {"Bad Name": "x"}}, ["not a valid HTTP header name"]),
    ({"headers": {"X-Evil": "a\r\nHost: evil"}}, ["CR, LF"]),
    ({"headers": {"X-Evil": "a\nb"}}, ["CR, LF"]),
    ({"headers": {"Content-Length": "5"}}, ["set by Pallet"]),
    ({"headers": {"X-A": "1", "x-a": "2"}}, ["twice"]),
    ({"headers": {"Authorization": "Bearer t"}, "username": "u"}, ["not both"]),
    ({"password": "pw"}, ["needs a username"]),
    ({"username": "a:b", "password": "pw"}, ["':'"]),
    ({"proxy_url": "socks5://proxy.example:1080"}, ["proxy_url"]),
    ({"proxy_username": "p"}, ["needs a proxy_url"]),
    ({"ca_cert": "not a certificate"}, ["ca_cert"]),
    ({"ca_cert": "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"},
     ["ca_cert"]),
    ({"client_cert": "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"},
     ["give both"]),
    ({"options": {"skip_types": ["srpm"]}}, ["options.skip_types is not a sync option"]),
    ({"type": "rpm", "options": {"retain_package_versions": -1}},
     ["options.retain_package_versions"]),
])
def test_invalid_fields_are_refused(client, fields, words):
    body = {"name": "up", "url": "https://mirror.example/repo/", **fields}
    error = assert_error(client.post("/api/v1/remotes", json=body), 400, "invalid")
    for word in words:
        assert word in error["message"], error
    assert client.get("/api/v1/remotes").json()["count"] == 0


def test_client_certificates_must_load(client, tls, tmp_path):
    assert_error(create(client, client_cert=tls.client_cert, client_key=tls.ca_cert), 400,
                 "invalid")
    mismatched = make_tls(tmp_path / "other")
    error = assert_error(create(client, client_cert=tls.client_cert,
                                client_key=mismatched.client_key), 400, "invalid")
    assert "client_cert" in error["message"]
    error = assert_error(create(client, client_cert=tls.client_cert + tls.client_key,
                                client_key=tls.client_key), 400, "invalid")
    assert "private key" in error["message"]
    encrypted = tmp_path / "encrypted.key"
    subprocess.run(["openssl", "pkey", "-in", str(tls.directory / "client.key"), "-aes256",
                    "-passout", "pass:secret", "-out", str(encrypted)], check=True,
                   capture_output=True)
    error = assert_error(create(client, client_cert=tls.client_cert,
                                client_key=encrypted.read_text()), 400, "invalid")
    assert "encrypted" in error["message"]


def test_file_urls_only_inside_allowed_directories(client, allowed, tmp_path):
    assert create(client, "inside", (allowed / "tree").as_uri() + "/").status_code == 201
    assert create(client, "dotdot", (allowed / "tree").as_uri() + "/../tree/").status_code \
        == 201
    outside = tmp_path / "outside"
    outside.mkdir()
    error = assert_error(create(client, "out", outside.as_uri() + "/"), 400, "invalid")
    assert "allowed import director" in error["message"]
    assert_error(create(client, "up-and-out", (allowed / "tree").as_uri() + "/../../outside/"),
                 400, "invalid")
    (allowed / "link").symlink_to(outside)
    assert_error(create(client, "link", (allowed / "link").as_uri() + "/"), 400, "invalid")
    assert_error(client.patch("/api/v1/remotes/inside",
                              json={"url": (allowed / "link").as_uri() + "/"}), 400, "invalid")


def test_file_urls_refused_when_no_directory_is_allowed(tmp_path, database_url):
    from fastapi.testclient import TestClient

    from pallet.api.app import create_app
    from pallet.auth.service import ensure_first_admin
    from pallet.runtime import Runtime
    from tests.conftest import ADMIN_PASSWORD, basic

    runtime = Runtime.create(make_settings(tmp_path, database_url))
    try:
        with runtime.db.write() as session:
            ensure_first_admin(session, ADMIN_PASSWORD)
        with TestClient(create_app(runtime), headers=basic("admin", ADMIN_PASSWORD)) as api:
            error = assert_error(create(api, url=tmp_path.as_uri() + "/"), 400, "invalid")
            assert "none are configured" in error["message"]
    finally:
        runtime.close()


def test_a_file_remote_url_names_its_manifest():
    assert manifest_url("https://h/r/") == "https://h/r/PULP_MANIFEST"
    assert manifest_url("https://h") == "https://h/PULP_MANIFEST"
    assert manifest_url("https://h/r/?sig=1") == "https://h/r/PULP_MANIFEST?sig=1"
    assert manifest_url("https://h/r/INDEX.csv") == "https://h/r/INDEX.csv"


def test_delete_waits_for_syncs_and_unsets_repositories(client, workers, runtime):
    assert create(client).status_code == 201
    client.post("/api/v1/repositories", json={"name": "repo"})
    with runtime.db.write() as session:
        repository = session.scalar(select(Repository).where(Repository.name == "repo"))
        repository.remote_id = session.scalar(select(Remote.id))
    response = client.delete("/api/v1/remotes/up")
    assert response.status_code == 202
    task = wait_for_task(client, response.json()["href"])
    assert task["state"] == "completed", task
    assert [lock["resource"] for lock in task["locks"]] == ["remote:1"]
    assert_error(client.get("/api/v1/remotes/up"), 404, "not_found")
    with runtime.db.read() as session:
        assert session.scalar(select(Repository.remote_id)) is None
    assert_error(client.delete("/api/v1/remotes/up"), 404, "not_found")


def test_sync_takes_its_locks(client, runtime):
    """No workers here: the task waits, and shows the locks it asked for."""
    assert create(client).status_code == 201
    client.post("/api/v1/repositories", json={"name": "repo"})
    task = client.post("/api/v1/repositories/repo/sync", json={"remote": "up"}).json()
    assert task["name"] == "remote.sync"
    assert sorted((lock["resource"], lock["exclusive"]) for lock in task["locks"]) == \
        [("orphans", False), ("remote:1", False), ("repository:1", True)]
    assert_error(client.post("/api/v1/repositories/repo/sync", json={"remote": "up",
                                                                       "extra": 1}),
                 400, "invalid")


# -- the CLI against a real server ------------------------------------------------------------


def test_cli_remote_and_sync(pallet, pallet_json, tmp_path, file_server, tls):
    write_repository(tmp_path / "upstream", {"a.txt": b"alpha", "b/c.txt": b"charlie"})
    upstream = file_server(tmp_path / "upstream")
    upstream.require_auth("mirror", "cli-s3cret")
    ca = tmp_path / "ca.pem"
    ca.write_text(tls.ca_cert)
    created = pallet_json("remote", "create", "cli-up", "--url", upstream.url,
                          "--username", "mirror", "--password-stdin", "--ca-cert", str(ca),
                          "--header", "X-Trace: one", "--max-retries", "1",
                          input="cli-s3cret\n")
    assert created["password_set"] and created["headers"] == {"X-Trace": "one"}
    shown = pallet("remote", "show", "cli-up").stdout
    assert "cli-s3cret" not in shown and "1 PEM certificate" in shown
    assert "cli-up" in pallet("remote", "list").stdout

    pallet("repository", "create", "cli-repo")
    synced = pallet("repository", "sync", "cli-repo", "--remote", "cli-up").stdout
    assert "created version 1" in synced and "2 files downloaded" in synced
    assert "nothing changed" in pallet("repository", "sync", "cli-repo", "--remote",
                                       "cli-up", "--mirror").stdout
    assert all(r.headers.get("x-trace") == "one" for r in upstream.requests)

    updated = pallet_json("remote", "update", "cli-up", "--clear", "password",
                          "--header", "X-Other: two", "--policy", "on_demand")
    assert not updated["password_set"] and updated["headers"] == {"X-Other": "two"}
    failed = pallet("repository", "sync", "cli-repo", "--remote", "cli-up", expect=1)
    assert "401" in failed.stderr
    assert "can be cleared" in pallet("remote", "update", "cli-up", "--clear", "nonsense",
                                         expect=1).stderr
    pallet("remote", "create", "cli-bad", "--url", upstream.url, "--header", "no colon",
           expect=1)
    assert "deleted" in pallet("remote", "delete", "cli-up").stdout
    pallet("remote", "show", "cli-up", expect=1)
