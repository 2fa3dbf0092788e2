"""The REST API in process: shapes, errors, auth, uploads, content, versions."""

import hashlib
import os
import re

import pytest

from tests.conftest import ADMIN_PASSWORD, basic, wait_for_task


def assert_error(response, status, code):
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"} and body["error"]["code"] == code
    assert body["error"]["message"] and "Traceback" not in response.text
    return body["error"]


def upload(client, data: bytes, chunk: int = 7, order=None) -> str:
    upload = client.post("/api/v1/uploads", json={"size": len(data)}).json()
    starts = list(range(0, len(data), chunk))
    for start in (order(starts) if order else starts):
        end = min(start + chunk, len(data)) - 1
        client.put(upload["href"], content=data[start:end + 1],
                   headers={"Content-Range": f"bytes {start}-{end}/{len(data)}"})
    return upload["href"]


def add_file(client, path: str, data: bytes) -> dict:
    sha256 = hashlib.sha256(data).hexdigest()
    href = upload(client, data)
    task = wait_for_task(client, client.post(f"{href}/commit", json={"sha256": sha256})
                         .json()["href"])
    assert task["state"] == "completed", task
    response = client.post("/api/v1/content/file", json={"relative_path": path, "sha256": sha256})
    assert response.status_code in (200, 201), response.text
    return response.json()


def run(client, response) -> dict:
    assert response.status_code == 202, response.text
    assert response.headers["location"] == response.json()["href"]
    return wait_for_task(client, response.json()["href"])


# -- status, docs, errors -------------------------------------------------------------------

def test_status_and_openapi_need_no_login(client):
    client.headers.pop("Authorization")
    status = client.get("/api/v1/status").json()
    assert status["schema_current"] is True and "file" in status["content_types"]
    assert "/api/v1/repositories" in client.get("/api/v1/openapi.json").json()["paths"]


def test_docs_page_loads_nothing_from_elsewhere(client):
    page = client.get("/api/v1/docs").text
    assert "swagger-ui-bundle.js" in page
    assert not re.findall(r"(?:src|href)=[\"']?(?:https?:)?//", page)
    asset = re.search(r"src=[\"']([^\"']*swagger-ui-bundle\.js)", page).group(1)
    assert client.get(asset).status_code == 200


def test_one_error_shape_for_every_failure(client):
    assert_error(client.get("/api/v1/repositories/nope"), 404, "not_found")
    assert_error(client.get("/api/v1/no/such/route"), 404, "not_found")
    assert_error(client.post("/api/v1/repositories", content=b"{not json",
                             headers={"Content-Type": "application/json"}), 400, "invalid")
    assert_error(client.post("/api/v1/repositories", json={"name": "x", "colour": "red"}),
                 400, "invalid")
    assert_error(client.get("/api/v1/tasks/999999"), 404, "not_found")
    assert_error(client.get("/api/v1/repositories?limit=0"), 400, "invalid")


# -- authentication and roles ----------------------------------------------------------------

def test_requests_need_credentials(client):
    client.headers.pop("Authorization")
    response = client.get("/api/v1/repositories")
    assert_error(response, 401, "unauthorized")
    assert response.headers["www-authenticate"].startswith("Basic")
    assert_error(client.get("/api/v1/repositories", headers=basic("admin", "wrong-password")),
                 401, "unauthorized")
    assert_error(client.get("/api/v1/repositories", headers={"Authorization": "Basic !!"}),
                 401, "unauthorized")
    assert_error(client.get("/api/v1/repositories",
                            headers={"Authorization": "Bearer pallet_nope"}), 401, "unauthorized")


def test_viewer_reads_but_does_not_write(client):
    assert client.post("/api/v1/users", json={"username": "vic", "password": "viewer-pass",
                                              "roles": ["viewer"]}).status_code == 201
    viewer = basic("vic", "viewer-pass")
    assert client.get("/api/v1/repositories", headers=viewer).status_code == 200
    assert_error(client.post("/api/v1/repositories", json={"name": "r"}, headers=viewer),
                 403, "forbidden")
    assert_error(client.get("/api/v1/users", headers=viewer), 403, "forbidden")
    assert client.get("/api/v1/me", headers=viewer).json()["permissions"] == ["read"]


def test_tokens_carry_the_users_roles_and_can_be_revoked(client):
    created = client.post("/api/v1/tokens", json={"name": "ci"}).json()
    bearer = {"Authorization": f"Bearer {created['token']}"}
    assert client.post("/api/v1/repositories", json={"name": "t"}, headers=bearer
                       ).status_code == 201
    assert [t["name"] for t in client.get("/api/v1/tokens").json()] == ["ci"]
    assert "token" not in client.get("/api/v1/tokens").json()[0]
    assert client.delete(f"/api/v1/tokens/{created['id']}").status_code == 204
    assert_error(client.get("/api/v1/repositories", headers=bearer), 401, "unauthorized")


def test_user_management(client):
    assert_error(client.post("/api/v1/users", json={"username": "u", "password": "short"}),
                 400, "invalid")
    assert_error(client.post("/api/v1/users", json={"username": "u", "password": "long-enough",
                                                    "roles": ["wizard"]}), 400, "invalid")
    client.post("/api/v1/users", json={"username": "u", "password": "long-enough"})
    assert_error(client.post("/api/v1/users", json={"username": "u", "password": "long-enough"}),
                 409, "conflict")
    client.patch("/api/v1/users/u", json={"is_active": False})
    assert_error(client.get("/api/v1/me", headers=basic("u", "long-enough")), 401, "unauthorized")
    assert client.delete("/api/v1/users/u").status_code == 204
    assert_error(client.get("/api/v1/users/u"), 404, "not_found")


# -- repositories ----------------------------------------------------------------------------

def test_repository_lifecycle(client, workers):
    created = client.post("/api/v1/repositories", json={"name": "web", "description": "d"})
    assert created.status_code == 201 and created.json()["latest_version"] == 0
    assert_error(client.post("/api/v1/repositories", json={"name": "web"}), 409, "conflict")
    assert_error(client.post("/api/v1/repositories", json={"name": "../etc"}), 400, "invalid")
    for i in range(3):
        client.post("/api/v1/repositories", json={"name": f"other-{i}"})
    page = client.get("/api/v1/repositories?limit=2").json()
    assert page["count"] == 4 and len(page["results"]) == 2 and page["next"]
    assert client.get(page["next"]).json()["previous"]
    assert client.get("/api/v1/repositories?name=web").json()["count"] == 1
    assert client.get("/api/v1/repositories?name_contains=other").json()["count"] == 3
    updated = client.patch("/api/v1/repositories/web", json={"retain_versions": 3}).json()
    assert updated["retain_versions"] == 3 and updated["description"] == "d"
    assert run(client, client.delete("/api/v1/repositories/web"))["state"] == "completed"
    assert_error(client.get("/api/v1/repositories/web"), 404, "not_found")


# -- uploads and content ---------------------------------------------------------------------

def test_chunks_arrive_out_of_order_and_resume(client, workers):
    data = os.urandom(100)
    href = upload(client, data, chunk=30, order=lambda s: [s[2], s[0]])  # 60-89, 0-29
    state = client.get(href).json()
    assert state["received"] == [[0, 29], [60, 89]] and not state["complete"]
    for start, end in ((30, 59), (90, 99)):  # resume: only the missing ranges
        client.put(href, content=data[start:end + 1],
                   headers={"Content-Range": f"bytes {start}-{end}/100"})
    assert client.get(href).json()["complete"]
    task = run(client, client.post(f"{href}/commit",
                                   json={"sha256": hashlib.sha256(data).hexdigest()}))
    artifact = client.get(task["created_resources"][0]).json()
    assert artifact["size"] == 100 and artifact["sha256"] == hashlib.sha256(data).hexdigest()
    assert_error(client.get(href), 404, "not_found")  # the upload became the artifact


def test_wrong_digest_is_refused_and_nothing_is_stored(client, runtime, workers):
    data = b"the real bytes"
    href = upload(client, data)
    task = run(client, client.post(f"{href}/commit", json={"sha256": "0" * 64}))
    assert task["state"] == "failed" and task["error"]["code"] == "digest_mismatch"
    assert client.get("/api/v1/artifacts").json()["count"] == 0
    assert not runtime.storage.exists(hashlib.sha256(data).hexdigest())
    assert not list(runtime.storage.tmp.iterdir())


def test_incomplete_upload_cannot_commit(client, workers):
    href = client.post("/api/v1/uploads", json={"size": 10}).json()["href"]
    client.put(href, content=b"12345", headers={"Content-Range": "bytes 0-4/10"})
    task = run(client, client.post(f"{href}/commit", json={"sha256": "0" * 64}))
    assert task["error"]["code"] == "conflict" and "misses 5" in task["error"]["message"]


@pytest.mark.parametrize("header, body", [
    (None, b"x"), ("bytes 0-4/11", b"12345"), ("bytes 5-4/10", b""), ("bytes 8-12/10", b"xxxxx"),
    ("bytes 0-4/10", b"123"), ("bytes 0-1/10", b"12345"), ("items 0-4/10", b"12345"),
])
def test_bad_chunks_are_refused(client, header, body):
    href = client.post("/api/v1/uploads", json={"size": 10}).json()["href"]
    headers = {"Content-Range": header} if header else {}
    assert_error(client.put(href, content=body, headers=headers), 400, "invalid")
    assert client.get(href).json()["received"] == []


def test_upload_size_limit(client):
    assert_error(client.post("/api/v1/uploads", json={"size": 2**50}), 413, "too_large")


@pytest.mark.parametrize("path", ["/abs", "a/../../etc/passwd", "a\x00b", "a\x1bb", "x" * 2000,
                                  "", "a//b"])
def test_unsafe_relative_paths_are_refused(client, path):
    assert_error(client.post("/api/v1/content/file",
                             json={"relative_path": path, "sha256": "a" * 64}), 400, "invalid")


def test_content_needs_a_stored_artifact_and_a_known_type(client):
    assert_error(client.post("/api/v1/content/file",
                             json={"relative_path": "a", "sha256": "a" * 64}), 400, "invalid")
    assert_error(client.post("/api/v1/content/file",
                             json={"relative_path": "a", "sha256": "nothex"}), 400, "invalid")
    assert_error(client.post("/api/v1/content/rpm", json={"name": "x"}), 400, "invalid")


def test_a_file_unit_needs_64_hex_digits_as_its_sha256():
    from pydantic import ValidationError

    from pallet.plugins.file import FileUnit

    for bad in ("g" * 64, "a" * 63, "a" * 65, "\u0661" * 64, "a" * 63 + "\n"):
        with pytest.raises(ValidationError, match="64 hexadecimal"):
            FileUnit(relative_path="a", sha256=bad)
    assert FileUnit(relative_path="a", sha256="A" * 64).sha256 == "a" * 64


def test_content_is_created_once_per_natural_key(client, workers):
    first = add_file(client, "dir/a.txt", b"A")
    again = client.post("/api/v1/content/file",
                        json={"relative_path": "dir/a.txt", "sha256": first["fields"]["sha256"]})
    assert again.status_code == 200 and again.json()["id"] == first["id"]
    assert first["artifacts"][0]["artifact"] is not None


# -- versions through the API ----------------------------------------------------------------

def test_modify_versions_diff_filter_delete(client, workers):
    client.post("/api/v1/repositories", json={"name": "r"})
    units = [add_file(client, f"pool/{name}", name.encode()) for name in "abcd"]
    ids = [u["id"] for u in units]
    task = run(client, client.post("/api/v1/repositories/r/modify", json={"add_content": ids[:3]}))
    assert task["created_resources"] == ["/api/v1/repositories/r/versions/1"]
    run(client, client.post("/api/v1/repositories/r/modify",
                            json={"add_content": ids[3:], "remove_content": ids[:1]}))
    v2 = client.get("/api/v1/repositories/r/versions/2").json()
    assert v2["counts"] == {"file": {"added": 1, "removed": 1, "present": 3}}
    assert client.get("/api/v1/repositories/r").json()["latest_version"] == 2
    diff = client.get("/api/v1/repositories/r/versions/2/diff/1").json()
    assert diff["counts"] == {"file": {"added": 1, "removed": 1}}
    added = client.get(diff["added_href"]).json()
    assert [c["id"] for c in added["results"]] == [ids[3]]
    listed = client.get("/api/v1/content", params={"repository": "r", "version": 1}).json()
    assert sorted(c["id"] for c in listed["results"]) == sorted(ids[:3])
    by_path = client.get("/api/v1/content", params={"relative_path": "pool/b"}).json()
    assert [c["id"] for c in by_path["results"]] == [ids[1]]
    prefix = client.get("/api/v1/content", params={"path_prefix": "pool/", "repository": "r"})
    assert prefix.json()["count"] == 3
    assert_error(client.get("/api/v1/content", params={"version": 1}), 400, "invalid")
    # A no-op modify completes without a version.
    task = run(client, client.post("/api/v1/repositories/r/modify", json={"add_content": ids[1:2]}))
    assert task["state"] == "completed" and task["created_resources"] == []
    # Bad input: unknown units fail the task; nothing changes.
    task = run(client, client.post("/api/v1/repositories/r/modify", json={"add_content": [10**9]}))
    assert task["state"] == "failed" and "do not exist" in task["error"]["message"]
    assert_error(client.post("/api/v1/repositories/r/modify", json={"base_version": 7}),
                 404, "not_found")
    assert run(client, client.delete("/api/v1/repositories/r/versions/1"))["state"] == "completed"
    assert [v["number"] for v in client.get("/api/v1/repositories/r/versions").json()["results"]
            ] == [2, 0]


def test_repair_reports_missing_and_corrupt_artifacts(client, runtime, workers):
    client.post("/api/v1/repositories", json={"name": "r"})
    units = [add_file(client, f"f{i}", f"bytes {i}".encode()) for i in range(3)]
    run(client, client.post("/api/v1/repositories/r/modify",
                            json={"add_content": [u["id"] for u in units]}))
    good, gone, bad = (u["fields"]["sha256"] for u in units)
    runtime.storage.delete(gone)
    runtime.storage.path(bad).write_bytes(b"tampered")
    report = run(client, client.post("/api/v1/repositories/r/versions/1/repair"))["result"]
    assert report["checked"] == 3 and report["missing"] == 1 and report["corrupt"] == 1
    assert [a["sha256"] for a in report["missing_artifacts"]] == [gone]
    assert [a["sha256"] for a in report["corrupt_artifacts"]] == [bad]
    group = client.post("/api/v1/repositories/r/repair")
    assert group.status_code == 202 and len(group.json()["tasks"]) == 2
    for href in group.json()["tasks"]:
        wait_for_task(client, href)
    assert client.get(group.json()["href"]).json()["states"] == {"completed": 2}


# -- hostile input ---------------------------------------------------------------------------

def test_absurd_numbers_are_refused_not_crashed(client):
    client.post("/api/v1/repositories", json={"name": "r"})
    huge = 10**30
    assert_error(client.get(f"/api/v1/tasks/{huge}"), 400, "invalid")
    assert_error(client.get(f"/api/v1/repositories?offset={huge}"), 400, "invalid")
    assert_error(client.post("/api/v1/repositories/r/modify", json={"base_version": huge}),
                 400, "invalid")
    assert_error(client.post("/api/v1/repositories/r/modify", json={"add_content": [huge]}),
                 400, "invalid")
    assert_error(client.post("/api/v1/tasks/purge", json={"older_than_days": 1e10}),
                 400, "invalid")
    assert_error(client.post("/api/v1/tokens", json={"name": "x", "expires_in_days": 10**7}),
                 400, "invalid")
    href = client.post("/api/v1/uploads", json={"size": 10}).json()["href"]
    assert_error(client.put(href, content=b"x", headers={"Content-Range": "bytes "
                                                         + "9" * 5000 + "-1/10"}),
                 400, "invalid")


def test_a_short_chunk_writes_nothing(client, runtime):
    href = client.post("/api/v1/uploads", json={"size": 5}).json()["href"]
    assert_error(client.put(href, content=b"abc", headers={"Content-Range": "bytes 0-4/5"}),
                 400, "invalid")
    upload_id = href.rsplit("/", 1)[1]
    assert (runtime.settings.uploads_dir / upload_id).read_bytes() == b"\0" * 5


def test_an_upload_being_committed_cannot_be_deleted(client):
    data = b"committing"
    href = upload(client, data)
    task = client.post(f"{href}/commit", json={"sha256": hashlib.sha256(data).hexdigest()})
    assert task.json()["state"] == "waiting"  # no workers in this test
    assert_error(client.delete(href), 409, "conflict")
    client.post(f"{task.json()['href']}/cancel")
    assert client.delete(href).status_code == 204


def test_oversized_bodies_are_refused_before_reading(tmp_path, database_url):
    from fastapi.testclient import TestClient

    from pallet.api.app import create_app
    from pallet.runtime import Runtime
    from tests.conftest import make_settings

    runtime = Runtime.create(make_settings(tmp_path, database_url, max_request_size=1000,
                                           max_upload_chunk_size=2000))
    with TestClient(create_app(runtime)) as anonymous:
        response = anonymous.post("/api/v1/repositories", content=b"x" * 5000,
                                  headers={"Content-Type": "application/json"})
        assert_error(response, 413, "too_large")
        chunked = anonymous.post("/api/v1/repositories", content=iter([b"x" * 800] * 3),
                                 headers={"Content-Type": "application/json"})
        assert_error(chunked, 413, "too_large")
    runtime.close()
