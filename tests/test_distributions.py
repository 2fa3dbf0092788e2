"""Distributions through the API in process, the overlap rule and its serialization, and
the publication, distribution and repository commands against a real local server."""

from __future__ import annotations

import json
import threading
import time

import httpx
import pytest
import uvicorn
from sqlalchemy import select
from typer.testing import CliRunner

from pallet.api.app import create_server_app
from pallet.cli.main import app as cli
from pallet.distributions import service
from pallet.distributions.models import ServingGeneration
from pallet.errors import Invalid
from tests.conftest import ADMIN_PASSWORD
from tests.factories import make_files
from tests.processes import free_port
from tests.test_publications import assert_error, modify, publish, repository

API = "/api/v1"


def distribution(client, name: str, base_path: str, **fields) -> dict:
    response = client.post(f"{API}/distributions",
                           json={"name": name, "base_path": base_path, **fields})
    assert response.status_code == 201, response.text
    return response.json()


def generation(runtime) -> int:
    with runtime.db.read() as session:
        return session.scalar(select(ServingGeneration.generation))


# -- create, show, list, update, delete ------------------------------------------------------

def test_targets_and_what_is_shown(client, runtime, workers):
    repository(client)
    modify(client, "web", add_content=make_files(runtime, 1))
    publication = publish(client)["result"]["publication"]
    latest = distribution(client, "latest", "/web/latest/", repository="web")
    assert latest["base_path"] == "web/latest"
    assert latest["base_url"] == "/pallet/content/web/latest/"
    assert latest["repository"] == "web" and latest["repository_href"] == f"{API}/repositories/web"
    assert latest["publication"] is None and latest["repository_version"] is None
    assert latest["hidden"] is False and latest["href"] == f"{API}/distributions/latest"

    pinned = distribution(client, "pinned", "web/pinned", publication=publication)
    assert pinned["publication"] == publication and pinned["repository"] is None
    assert pinned["publication_href"] == f"{API}/publications/{publication}"
    frozen = distribution(client, "frozen", "web/v0", hidden=True,
                          repository_version={"repository": "web", "version": 0})
    assert frozen["repository_version"] == {
        "repository": "web", "version": 0, "href": f"{API}/repositories/web/versions/0"}
    idle = distribution(client, "idle", "odd path/with space")
    assert idle["base_url"] == "/pallet/content/odd%20path/with%20space/"
    assert (idle["publication"], idle["repository"], idle["repository_version"]) == \
        (None, None, None)

    assert client.get(f"{API}/distributions/pinned").json() == pinned
    listed = client.get(f"{API}/distributions").json()
    assert [d["name"] for d in listed["results"]] == ["frozen", "idle", "latest", "pinned"]
    assert [d["name"] for d in client.get(f"{API}/distributions?hidden=true").json()["results"]
            ] == ["frozen"]
    assert client.get(f"{API}/distributions?hidden=false").json()["count"] == 3
    assert client.get(f"{API}/distributions?base_path=/web/v0/").json()["count"] == 1
    assert client.get(f"{API}/distributions?name=idle").json()["count"] == 1
    page = client.get(f"{API}/distributions?limit=3").json()
    assert page["count"] == 4 and len(page["results"]) == 3 and page["next"]


def test_refusals(client, runtime):
    repository(client)
    distribution(client, "one", "one")
    for body, status, code in [
        ({"name": "x", "base_path": ""}, 400, "invalid"),
        ({"name": "x", "base_path": "///"}, 400, "invalid"),
        ({"name": "x", "base_path": "a/../b"}, 400, "invalid"),
        ({"name": "x", "base_path": "a//b"}, 400, "invalid"),
        ({"name": "x", "base_path": "a\\b"}, 400, "invalid"),
        ({"name": "x", "base_path": "a/\x00"}, 400, "invalid"),
        ({"name": "x", "base_path": "s/" + "x" * 300}, 400, "invalid"),
        ({"name": "../x", "base_path": "x"}, 400, "invalid"),
        ({"name": "one", "base_path": "two"}, 409, "conflict"),
        ({"name": "x", "base_path": "x", "publication": 77}, 404, "not_found"),
        ({"name": "x", "base_path": "x", "repository": "nope"}, 404, "not_found"),
        ({"name": "x", "base_path": "x",
          "repository_version": {"repository": "web", "version": 9}}, 404, "not_found"),
        ({"name": "x", "base_path": "x", "repository": "web",
          "repository_version": {"repository": "web", "version": 0}}, 400, "invalid"),
        ({"name": "x", "base_path": "x", "colour": "red"}, 400, "invalid"),
    ]:
        assert_error(client.post(f"{API}/distributions", json=body), status, code)
    assert client.get(f"{API}/distributions").json()["count"] == 1
    assert_error(client.get(f"{API}/distributions/x"), 404, "not_found")
    assert_error(client.patch(f"{API}/distributions/x", json={"hidden": True}), 404, "not_found")
    assert_error(client.delete(f"{API}/distributions/x"), 404, "not_found")


def test_base_paths_may_not_overlap(client):
    distribution(client, "ab", "a/b")
    for path in ("a", "a/b", "/a/b/", "a/b/c", "a/b/c/d"):
        error = assert_error(client.post(f"{API}/distributions",
                                         json={"name": "new", "base_path": path}),
                             400, "invalid")
        assert error["details"]["distribution"] == "ab" and "'ab'" in error["message"]
    # Neighbours that are not path-segment prefixes, and case, are no overlap.
    for i, path in enumerate(("a/bc", "ab", "a/c", "A", "a/B", "b/a/b")):
        distribution(client, f"n{i}", path)
    # LIKE wildcards in a base path match only themselves.
    distribution(client, "abc", "xyz/d")
    distribution(client, "wild", "x_z")
    distribution(client, "percent", "x%")
    assert_error(client.post(f"{API}/distributions", json={"name": "w2", "base_path": "x_z/q"}),
                 400, "invalid")


def test_update_revalidates_and_replaces_the_target(client, runtime, workers):
    repository(client)
    publication = publish(client)["result"]["publication"]
    distribution(client, "d", "d", repository="web")
    distribution(client, "other", "other")
    href = f"{API}/distributions/d"

    def patch(**body) -> dict:
        response = client.patch(href, json=body)
        assert response.status_code == 200, response.text
        return response.json()

    assert patch(hidden=True)["hidden"] is True and patch()["repository"] == "web"
    moved = patch(publication=publication)
    assert moved["publication"] == publication and moved["repository"] is None
    # A null clears only the kind of target it names.
    assert patch(repository=None)["publication"] == publication
    moved = patch(repository_version={"repository": "web", "version": 0})
    assert moved["repository_version"]["version"] == 0 and moved["publication"] is None
    cleared = patch(publication=None, repository=None, repository_version=None)
    assert (cleared["publication"], cleared["repository"], cleared["repository_version"]) == \
        (None, None, None)
    assert patch(base_path="/d/deeper/")["base_path"] == "d/deeper"
    assert patch(base_path="d/deeper")["base_path"] == "d/deeper"  # its own path: no overlap

    for body, status in (({"base_path": "other/x"}, 400), ({"base_path": "a/../b"}, 400),
                         ({"name": "other"}, 409), ({"name": "bad name"}, 400),
                         ({"publication": 999}, 404),
                         ({"publication": publication, "repository": "web"}, 400)):
        assert client.patch(href, json=body).status_code == status, body
    shown = client.get(href).json()
    assert shown["base_path"] == "d/deeper" and shown["publication"] is None

    renamed = patch(name="e", hidden=False)
    assert renamed["href"] == f"{API}/distributions/e" and renamed["hidden"] is False
    assert client.delete(f"{API}/distributions/e").status_code == 204
    assert_error(client.get(f"{API}/distributions/e"), 404, "not_found")
    distribution(client, "again", "d/deeper/x")  # its base path is free again


def test_every_change_tells_the_content_app(client, runtime):
    start, epoch = generation(runtime), runtime.serving_epoch
    distribution(client, "d", "d")
    client.patch(f"{API}/distributions/d", json={"hidden": True})
    client.delete(f"{API}/distributions/d")
    assert generation(runtime) == start + 3 and runtime.serving_epoch == epoch + 3
    client.post(f"{API}/distributions", json={"name": "x", "base_path": "../x"})
    assert generation(runtime) == start + 3  # a refusal changes nothing


def test_overlap_checks_are_serialized(runtime):
    """A second writer's check waits for the first's transaction, so two overlapping base
    paths created at the same time cannot both succeed."""
    outcome: list[object] = []

    def second() -> None:
        try:
            with runtime.db.write() as session:
                service.create_distribution(session, name="inner", base_path="a/b")
            outcome.append("created")
        except Invalid as exc:
            outcome.append(exc)

    with runtime.db.write() as session:
        service.create_distribution(session, name="outer", base_path="a")
        session.flush()
        thread = threading.Thread(target=second)
        thread.start()
        time.sleep(0.5)
        assert thread.is_alive()  # waiting for our transaction
    thread.join(10)
    assert len(outcome) == 1 and isinstance(outcome[0], Invalid), outcome
    assert outcome[0].details["distribution"] == "outer"


# -- the commands, against a real local server -----------------------------------------------

@pytest.fixture
def server(runtime, client, workers):
    """The API and content app on a free port of 127.0.0.1, in this process; its URL."""
    port = free_port()
    config = uvicorn.Config(create_server_app(runtime), host="127.0.0.1", port=port,
                            log_level="warning", lifespan="on")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert time.monotonic() < deadline and thread.is_alive(), "the server did not start"
        time.sleep(0.02)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(10)


@pytest.fixture
def pallet(server, monkeypatch, tmp_path):
    """Run a `pallet` command in process; its result (exit code, stdout, stderr)."""
    for key, value in (("PALLET_URL", server), ("PALLET_USERNAME", "admin"),
                       ("PALLET_PASSWORD", ADMIN_PASSWORD)):
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("PALLET_TOKEN", raising=False)
    monkeypatch.delenv("PALLET_CLI_CONFIG", raising=False)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "no-config"))
    runner = CliRunner()

    def invoke(*args: str, code: int = 0):
        result = runner.invoke(cli, list(args))
        assert result.exit_code == code, (args, result.stdout, result.stderr)
        return result
    return invoke


def as_json(pallet, *args: str):
    return json.loads(pallet(*args, "--json").stdout)


def test_one_command_sets_up_the_chain_and_a_modify_updates_what_is_served(
        pallet, server, runtime):
    made = as_json(pallet, "repository", "create", "web", "--autopublish",
                   "--publish-option", "manifest=PULP_MANIFEST", "--distribute", "/files/web/")
    assert made["repository"]["autopublish"] is True
    assert made["repository"]["publish_options"] == {"manifest": "PULP_MANIFEST"}
    assert made["distribution"]["repository"] == "web"
    assert made["distribution"]["base_url"] == "/pallet/content/files/web/"
    shown = pallet("distribution", "show", "web").stdout
    assert "repository web" in shown and "files/web" in shown

    # A refused repository leaves no distribution behind; a taken base path, no repository.
    pallet("repository", "create", "web", "--distribute", "elsewhere", code=1)
    assert as_json(pallet, "distribution", "list")["count"] == 1
    failed = pallet("repository", "create", "web2", "--distribute", "files", code=1)
    assert "overlap" in failed.stderr
    assert as_json(pallet, "repository", "list")["count"] == 1

    ids = make_files(runtime, 2)
    pallet("repository", "modify", "web", "--add", str(ids[0]), "--add", str(ids[1]))
    manifest = httpx.get(f"{server}/pallet/content/files/web/PULP_MANIFEST", timeout=10)
    assert manifest.status_code == 200 and len(manifest.text.splitlines()) == 2


def test_publication_and_distribution_commands(pallet, server, runtime):
    pallet("repository", "create", "web")
    ids = make_files(runtime, 1)
    pallet("repository", "modify", "web", "--add", str(ids[0]))
    task = as_json(pallet, "publication", "create", "web", "--option", "manifest=M")
    publication = task["result"]["publication"]
    again = pallet("publication", "create", "web", "--version", "1", "--option", "manifest=M")
    assert f"publication {publication} of web version 1 exists already" in again.stdout
    assert "created publication" in pallet("publication", "create", "web").stdout
    listed = as_json(pallet, "publication", "list", "--repository", "web")
    assert listed["count"] == 2 and listed["results"][1]["id"] == publication
    assert as_json(pallet, "publication", "show", str(publication))["options"] == \
        {"manifest": "M"}
    pallet("publication", "create", "web", "--option", "manifest", code=1)
    pallet("publication", "create", "web", "--option", "colour=red", code=1)

    pallet("distribution", "create", "pinned", "--base-path", "pinned",
           "--publication", str(publication))
    pallet("distribution", "create", "v1", "--base-path", "v1", "--version", "web:1",
           "--hidden")
    pallet("distribution", "create", "x", "--base-path", "x", "--version", "web", code=1)
    pallet("distribution", "create", "x", "--base-path", "x", "--repository", "web",
           "--publication", "1", code=1)
    hidden = as_json(pallet, "distribution", "list", "--hidden")
    assert [d["name"] for d in hidden["results"]] == ["v1"]
    assert "version 1 of web" in pallet("distribution", "list").stdout
    index = httpx.get(f"{server}/pallet/content/", timeout=10)
    assert "pinned/" in index.text and "v1/" not in index.text  # hidden: listed by the API only

    refused = pallet("publication", "delete", str(publication), code=1)
    assert "pinned" in refused.stderr
    updated = as_json(pallet, "distribution", "update", "pinned", "--no-target", "--visible",
                      "--base-path", "pinned/now", "--new-name", "now")
    assert updated["publication"] is None and updated["base_path"] == "pinned/now"
    pallet("distribution", "update", "now", code=1)
    pallet("publication", "delete", str(publication))
    pallet("publication", "show", str(publication), code=1)
    pallet("distribution", "delete", "now")
    assert as_json(pallet, "distribution", "list")["count"] == 1


def test_repository_update_command(pallet, runtime):
    from pallet.remotes.models import Remote

    with runtime.db.write() as session:
        session.add(Remote(name="up", type="file", url="http://127.0.0.1:1/"))
    pallet("repository", "create", "web", "--remote", "up")
    updated = as_json(pallet, "repository", "update", "web", "--autopublish",
                      "--publish-option", "manifest=INDEX")
    assert (updated["remote"], updated["autopublish"], updated["publish_options"]) == \
        ("up", True, {"manifest": "INDEX"})
    updated = as_json(pallet, "repository", "update", "web", "--no-remote", "--no-autopublish",
                      "--default-publish-options")
    assert (updated["remote"], updated["autopublish"], updated["publish_options"]) == \
        (None, False, {})
    assert "no remote named 'gone'" in pallet("repository", "update", "web", "--remote", "gone",
                                              code=1).stderr
    pallet("repository", "update", "web", "--remote", "up", "--no-remote", code=1)
    shown = pallet("repository", "show", "web").stdout
    assert "autopublish: False" in shown
