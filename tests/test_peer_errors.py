"""What a replication says when the other side is not a Pallet that works: the status, and a
short excerpt of the answer with its control characters escaped, never the answer itself.
And a selection that names nothing fails, saying so."""

from __future__ import annotations

import json

import pytest

from tests.conftest import wait_for_task
from tests.peers import Answering

HOSTILE = "\x1b[2J\x1b[31mpwned\r\nSet-Cookie: x" + "A" * 5000


@pytest.fixture
def answering():
    servers: list[Answering] = []

    def start(status: int, body: bytes, content_type: str = "text/plain") -> Answering:
        servers.append(Answering(status, body, content_type))
        return servers[-1]
    yield start
    for server in servers:
        server.close()


def replicate_from(client, url: str) -> dict:
    made = client.post("/api/v1/upstreams", json={"name": "up", "base_url": url,
                                                  "repositories": ["web"]})
    assert made.status_code == 201, made.text
    task = client.post("/api/v1/upstreams/up/replicate").json()
    return wait_for_task(client, task["href"], timeout=20)


def assert_short_and_escaped(message: str) -> None:
    assert len(message) < 400, len(message)
    assert not any(ch in message for ch in "\x1b\r\n"), message
    assert "\\x1b" in message  # escaped, so a reader sees something was there


def test_an_error_page_is_cut_short_and_escaped(client, workers, answering):
    task = replicate_from(client, answering(500, HOSTILE.encode()).url)
    assert task["state"] == "failed"
    error = task["error"]
    assert error["code"] == "peer_failed" and error["details"]["status"] == 500
    assert "answered 500" in error["message"]
    assert_short_and_escaped(error["message"])


def test_an_error_in_pallet_shape_is_cut_short_too(client, workers, answering):
    body = json.dumps({"error": {"code": "x'; DROP TABLE", "message": HOSTILE}}).encode()
    task = replicate_from(client, answering(409, body, "application/json").url)
    error = task["error"]
    assert error["code"] == "peer_failed" and error["details"]["status"] == 409
    assert_short_and_escaped(error["message"])


@pytest.mark.parametrize("status", [401, 403])
def test_refusals_are_cut_short_too(client, workers, answering, status):
    body = json.dumps({"error": {"code": "unauthorized", "message": HOSTILE}}).encode()
    task = replicate_from(client, answering(status, body, "application/json").url)
    assert task["error"]["code"] in ("peer_unauthorized", "peer_forbidden")
    assert_short_and_escaped(task["error"]["message"])


def test_an_answer_that_is_not_json_is_cut_short(client, workers, answering):
    task = replicate_from(client, answering(200, HOSTILE.encode()).url)
    assert "did not answer with JSON" in task["error"]["message"]
    assert_short_and_escaped(task["error"]["message"])


def test_a_catalogue_it_cannot_read_is_cut_short(client, workers, answering):
    body = json.dumps({"repositories": [{"name": HOSTILE, "type": "file", "version": 1,
                                         "digest": "0" * 64}]}).encode()
    task = replicate_from(client, answering(200, body, "application/json").url)
    assert "catalogue this server cannot read" in task["error"]["message"]
    assert len(task["error"]["message"]) < 400
    assert not any(ch in task["error"]["message"] for ch in "\x1b\r\n")


# -- a selection that names nothing -----------------------------------------------------------

def test_a_selection_that_matches_no_upstream_repository_fails(client, workers, answering):
    empty = json.dumps({"repositories": [], "absent": []}).encode()
    task = replicate_from(client, answering(200, empty, "application/json").url)
    assert task["state"] == "failed", task
    assert task["error"]["code"] == "nothing_selected"
    assert "no repository that the selection names (repositories: web)" in \
        task["error"]["message"]
    assert task["progress"][0] == {"stage": "asking the upstream", "done": 1, "total": 1}


def test_a_push_whose_selection_matches_nothing_here_fails(client, workers, answering):
    made = client.post("/api/v1/downstreams", json={
        "name": "down", "base_url": answering(500, b"never asked").url, "importer": "in",
        "repositories": ["nothing-*"]})
    assert made.status_code == 201, made.text
    task = wait_for_task(client, client.post("/api/v1/downstreams/down/push").json()["href"])
    assert task["state"] == "failed" and task["error"]["code"] == "nothing_selected"
    assert "this server has no repository" in task["error"]["message"]
