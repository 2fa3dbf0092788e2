"""Publications, auto-publish and the repository fields that drive them, through the API
in process (and the service for the races)."""

from __future__ import annotations

import hashlib

from sqlalchemy import func, select

from pallet.plugin import Plugin, RepositoryType
from pallet.publications.models import Publication
from pallet.remotes.models import Remote
from pallet.tasks.models import Task
from tests.conftest import wait_for_task
from tests.factories import make_files

API = "/api/v1"


def assert_error(response, status: int, code: str) -> dict:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["code"] == code and error["message"]
    return error


def run(client, response) -> dict:
    assert response.status_code == 202, response.text
    task = wait_for_task(client, response.json()["href"])
    assert task["state"] == "completed", task
    return task


def repository(client, name: str = "web", **fields) -> dict:
    response = client.post(f"{API}/repositories", json={"name": name, **fields})
    assert response.status_code == 201, response.text
    return response.json()


def modify(client, name: str, **body) -> dict:
    return run(client, client.post(f"{API}/repositories/{name}/modify", json=body))


def publish(client, name: str = "web", **body) -> dict:
    return run(client, client.post(f"{API}/publications", json={"repository": name, **body}))


def manifest_lines(runtime, client, publication: dict, path: str = "PULP_MANIFEST"
                   ) -> list[str]:
    """The lines of a publication's manifest, read from the artifact store."""
    (entry,) = [f for f in publication["metadata_files"] if f["relative_path"] == path]
    with runtime.storage.open(entry["sha256"]) as stream:
        data = stream.read()
    assert len(data) == entry["size"] and hashlib.sha256(data).hexdigest() == entry["sha256"]
    return sorted(data.decode().splitlines())


def expected_lines(client, name: str, number: int) -> list[str]:
    """`relative_path,sha256,size` of every file of a version, from the content API."""
    units = client.get(f"{API}/content", params={"repository": name, "version": number}
                       ).json()["results"]
    lines = []
    for unit in units:
        for artifact in unit["artifacts"]:
            size = client.get(f"{API}/artifacts", params={"sha256": artifact["sha256"]}
                              ).json()["results"][0]["size"]
            lines.append(f"{artifact['relative_path']},{artifact['sha256']},{size}")
    return sorted(lines)


def publication_count(runtime) -> int:
    with runtime.db.read() as session:
        return session.scalar(select(func.count()).select_from(Publication))


def add_remote(runtime, name: str, type: str = "file") -> None:
    with runtime.db.write() as session:
        session.add(Remote(name=name, type=type, url=f"http://127.0.0.1:1/{name}/"))


def bare_type(runtime) -> None:
    """A repository type served straight from its versions: it has no publications."""
    runtime.plugins.add(Plugin(name="bare", repository_types=(
        RepositoryType(name="bare", content_types=("file",)),)))


# -- publish, reuse, show, list ------------------------------------------------------------

def test_publish_shows_its_manifest_and_reuses_the_same_version_and_options(
        client, runtime, workers):
    repository(client)
    ids = make_files(runtime, 3)
    modify(client, "web", add_content=ids)
    task = publish(client)
    first = task["result"]
    assert first["created"] is True and first["version"] == 1
    href = f"{API}/publications/{first['publication']}"
    assert task["created_resources"] == [href] and first["href"] == href
    # Shared: publishing reads an immutable version, and stores artifacts (never during cleanup).
    assert sorted((lock["resource"].split(":")[0], lock["exclusive"])
                  for lock in task["locks"]) == [("orphans", False), ("repository", False)]
    shown = client.get(href).json()
    assert shown["repository"] == "web" and shown["version"] == 1
    assert shown["options"] == {"manifest": "PULP_MANIFEST"} and shown["pass_through"] is True
    assert shown["version_href"] == f"{API}/repositories/web/versions/1"
    assert [f["relative_path"] for f in shown["metadata_files"]] == ["PULP_MANIFEST"]
    assert manifest_lines(runtime, client, shown) == expected_lines(client, "web", 1)
    assert len(expected_lines(client, "web", 1)) == 3

    # The same version and options, named differently (explicit number, explicit default).
    again = publish(client, version=1, options={"manifest": "PULP_MANIFEST"})
    assert again["result"] == {**first, "created": False}
    assert again["created_resources"] == [] and publication_count(runtime) == 1

    other = publish(client, version=1, options={"manifest": "meta/INDEX"})["result"]
    assert other["created"] is True and other["publication"] != first["publication"]
    older = publish(client, version=0)["result"]
    assert older["created"] is True and older["version"] == 0
    empty = client.get(f"{API}/publications/{older['publication']}").json()
    assert manifest_lines(runtime, client, empty) == []

    listed = client.get(f"{API}/publications", params={"repository": "web"}).json()
    assert [p["id"] for p in listed["results"]] == [older["publication"], other["publication"],
                                                   first["publication"]]
    by_version = client.get(f"{API}/publications", params={"repository": "web", "version": 1})
    assert by_version.json()["count"] == 2
    assert client.get(f"{API}/publications?limit=1").json()["next"]
    assert_error(client.get(f"{API}/publications", params={"version": 1}), 400, "invalid")
    assert_error(client.get(f"{API}/publications", params={"repository": "nope"}),
                 404, "not_found")


def test_bad_publish_requests_are_refused_before_queueing(client, runtime):
    repository(client)
    bare_type(runtime)
    repository(client, "plain", type="bare")
    refusals = [
        ({"repository": "web", "options": {"colour": "red"}}, 400, "invalid"),
        ({"repository": "web", "options": {"manifest": "../up"}}, 400, "invalid"),
        ({"repository": "web", "options": {"manifest": 7}}, 400, "invalid"),
        ({"repository": "web", "version": 5}, 404, "not_found"),
        ({"repository": "web", "version": -1}, 400, "invalid"),
        ({"repository": "nope"}, 404, "not_found"),
        ({"repository": "plain"}, 400, "invalid"),
        ({"repository": "web", "extra": 1}, 400, "invalid"),
    ]
    for body, status, code in refusals:
        assert_error(client.post(f"{API}/publications", json=body), status, code)
    error = assert_error(client.post(f"{API}/publications", json={"repository": "web",
                                                                  "options": {"colour": 1}}),
                         400, "invalid")
    assert "colour" in error["message"]
    with runtime.db.read() as session:
        assert session.scalar(select(func.count()).select_from(Task)) == 0
    assert_error(client.get(f"{API}/publications/12345"), 404, "not_found")
    assert_error(client.get(f"{API}/publications/{10**30}"), 400, "invalid")


def test_the_same_publication_requested_twice_at_once_is_made_once(client, runtime, workers):
    repository(client)
    modify(client, "web", add_content=make_files(runtime, 50))
    responses = [client.post(f"{API}/publications", json={"repository": "web"})
                 for _ in range(4)]
    results = [run(client, response)["result"] for response in responses]
    assert len({r["publication"] for r in results}) == 1
    assert sum(r["created"] for r in results) == 1
    assert publication_count(runtime) == 1


# -- delete --------------------------------------------------------------------------------

def test_a_publication_named_by_a_distribution_cannot_be_deleted(client, runtime, workers):
    repository(client)
    publication = publish(client)["result"]["publication"]
    href = f"{API}/publications/{publication}"
    for name, target in (("direct", {"publication": publication}),
                         ("latest", {"repository": "web"})):
        response = client.post(f"{API}/distributions",
                               json={"name": name, "base_path": name, **target})
        assert response.status_code == 201, response.text
    error = assert_error(client.delete(href), 409, "conflict")
    assert error["details"]["distributions"] == ["direct"] and "direct" in error["message"]
    assert client.get(href).status_code == 200
    assert client.delete(f"{API}/distributions/direct").status_code == 204
    assert client.delete(href).status_code == 204
    assert_error(client.get(href), 404, "not_found")
    assert_error(client.delete(href), 404, "not_found")
    assert client.get(f"{API}/distributions/latest").json()["repository"] == "web"


def test_deleting_a_version_deletes_its_publications(client, runtime, workers):
    repository(client)
    ids = make_files(runtime, 2)
    modify(client, "web", add_content=ids[:1])
    publication = publish(client)["result"]["publication"]
    response = client.post(f"{API}/distributions",
                           json={"name": "pinned", "base_path": "pinned",
                                 "publication": publication})
    assert response.status_code == 201 and response.json()["publication"] == publication
    modify(client, "web", add_content=ids[1:])
    keep = publish(client)["result"]["publication"]
    run(client, client.delete(f"{API}/repositories/web/versions/1"))
    assert_error(client.get(f"{API}/publications/{publication}"), 404, "not_found")
    assert client.get(f"{API}/publications/{keep}").status_code == 200
    # The distribution stays, serving nothing.
    pinned = client.get(f"{API}/distributions/pinned").json()
    assert (pinned["publication"], pinned["repository"], pinned["repository_version"]) == \
        (None, None, None)
    # Deleting the repository takes the rest.
    run(client, client.delete(f"{API}/repositories/web"))
    assert publication_count(runtime) == 0


# -- auto-publish ---------------------------------------------------------------------------

def test_autopublish_publishes_each_new_version_in_its_task(client, runtime, workers):
    created = repository(client, autopublish=True,
                         publish_options={"manifest": "index/MANIFEST"})
    assert created["autopublish"] is True
    assert created["publish_options"] == {"manifest": "index/MANIFEST"}
    ids = make_files(runtime, 3)
    task = modify(client, "web", add_content=ids)
    publication = task["result"]["publication"]
    href = f"{API}/publications/{publication}"
    assert task["result"]["version"] == 1
    assert task["created_resources"] == [f"{API}/repositories/web/versions/1", href]
    shown = client.get(href).json()
    assert shown["version"] == 1 and shown["options"] == {"manifest": "index/MANIFEST"}
    assert manifest_lines(runtime, client, shown, "index/MANIFEST") == \
        expected_lines(client, "web", 1)

    # No change: no version, no publication.
    unchanged = modify(client, "web", add_content=ids[:1])
    assert unchanged["result"] == {"version": None} and unchanged["created_resources"] == []
    assert publication_count(runtime) == 1

    removed = modify(client, "web", remove_content=ids[:1])["result"]
    shown = client.get(f"{API}/publications/{removed['publication']}").json()
    assert shown["version"] == 2
    lines = manifest_lines(runtime, client, shown, "index/MANIFEST")
    assert lines == expected_lines(client, "web", 2) and len(lines) == 2

    # Switched off: versions come without publications.
    client.patch(f"{API}/repositories/web", json={"autopublish": False})
    assert "publication" not in modify(client, "web", add_content=ids[:1])["result"]
    assert publication_count(runtime) == 2


# -- repository fields ----------------------------------------------------------------------

def test_repository_remote_autopublish_and_publish_options(client, runtime):
    add_remote(runtime, "upstream")
    add_remote(runtime, "other")
    add_remote(runtime, "odd", type="rpm")
    created = repository(client, remote="upstream")
    assert (created["remote"], created["autopublish"], created["publish_options"]) == \
        ("upstream", False, {})
    assert client.get(f"{API}/repositories/web").json()["remote"] == "upstream"

    updated = client.patch(f"{API}/repositories/web", json={
        "remote": "other", "autopublish": True, "publish_options": {"manifest": "M"}}).json()
    assert (updated["remote"], updated["autopublish"], updated["publish_options"]) == \
        ("other", True, {"manifest": "M"})
    # Only what is given changes; a null remote removes it.
    updated = client.patch(f"{API}/repositories/web", json={"remote": None}).json()
    assert (updated["remote"], updated["autopublish"], updated["publish_options"]) == \
        (None, True, {"manifest": "M"})
    updated = client.patch(f"{API}/repositories/web", json={"publish_options": None}).json()
    assert updated["publish_options"] == {} and updated["autopublish"] is True

    # Refusals change nothing.
    before = client.get(f"{API}/repositories/web").json()
    error = assert_error(client.patch(f"{API}/repositories/web", json={"remote": "nope"}),
                         404, "not_found")
    assert "nope" in error["message"]
    assert_error(client.patch(f"{API}/repositories/web", json={"remote": "odd"}),
                 400, "invalid")
    assert_error(client.patch(f"{API}/repositories/web",
                              json={"autopublish": False, "publish_options": {"x": 1}}),
                 400, "invalid")
    assert client.get(f"{API}/repositories/web").json() == before

    for body, status in (({"remote": "nope"}, 404), ({"publish_options": {"x": 1}}, 400),
                         ({"publish_options": {"manifest": "/abs"}}, 400),
                         ({"autopublish": "often"}, 400)):
        response = client.post(f"{API}/repositories", json={"name": "bad", **body})
        assert response.status_code == status, response.text
    assert_error(client.get(f"{API}/repositories/bad"), 404, "not_found")

    bare_type(runtime)
    assert repository(client, "plain", type="bare")["publish_options"] == {}
    assert_error(client.post(f"{API}/repositories",
                             json={"name": "plain2", "type": "bare", "autopublish": True}),
                 400, "invalid")
    assert_error(client.patch(f"{API}/repositories/plain", json={"autopublish": True}),
                 400, "invalid")


def test_deleting_a_remote_leaves_its_repositories_without_one(client, runtime):
    add_remote(runtime, "upstream")
    repository(client, remote="upstream")
    with runtime.db.write() as session:
        session.delete(session.scalar(select(Remote).where(Remote.name == "upstream")))
    assert client.get(f"{API}/repositories/web").json()["remote"] is None


def test_a_metadata_file_may_not_take_a_content_files_path(client, runtime, workers):
    repository(client)
    modify(client, "web", add_content=make_files(runtime, 2, prefix="rel"))  # rel/0.txt, …
    for taken in ("rel/0.txt", "rel", "rel/1.txt/deeper"):
        task = wait_for_task(client, client.post(f"{API}/publications", json={
            "repository": "web", "options": {"manifest": taken}}).json()["href"])
        assert task["state"] == "failed", task
        assert task["error"]["code"] == "path_collision", task["error"]
        assert taken in task["error"]["message"], task["error"]
    assert publication_count(runtime) == 0
    assert publish(client, options={"manifest": "rel0"})["result"]["created"]

    # Auto-publishing refuses it the same way: the new version is not made either.
    client.patch(f"{API}/repositories/web", json={"autopublish": True,
                                                  "publish_options": {"manifest": "more/a"}})
    more = make_files(runtime, 1, prefix="more/a")  # more/a/0.txt: under the manifest
    task = wait_for_task(client, client.post(f"{API}/repositories/web/modify",
                                             json={"add_content": more}).json()["href"])
    assert task["state"] == "failed" and task["error"]["code"] == "path_collision", task
    assert client.get(f"{API}/repositories/web").json()["latest_version"] == 1
