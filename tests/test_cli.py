"""The `pallet` CLI against a real `pallet serve` started here, run as a user runs it: a
subprocess with PALLET_URL, PALLET_USERNAME and PALLET_PASSWORD in its environment."""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from pallet.cli.client import DEFAULT_URL, Client, ClientConfig, ClientError, load_config
from pallet.cli.upload import chunks, missing_ranges
from tests.conftest import empty_database
from tests.processes import SERVER_START_SECONDS, free_port, stop

PASSWORD = "cli-admin-password"


@pytest.fixture(scope="module")
def server_database(tmp_path_factory):
    """A database for the server alone: a fresh PostgreSQL database, or a SQLite file."""
    yield from empty_database(tmp_path_factory.mktemp("cli-db"), "cli")


@pytest.fixture(scope="module")
def server(tmp_path_factory, server_database):
    """A `pallet serve` on a free port; its URL. Stopped by its PID at the end."""
    data = tmp_path_factory.mktemp("cli-server")
    port = free_port()
    env = dict(os.environ, PALLET_DATA_DIR=str(data / "data"), PALLET_PORT=str(port),
               PALLET_ADMIN_PASSWORD=PASSWORD, PALLET_WORKERS="2",
               PALLET_DATABASE_URL=server_database, PALLET_TASK_POLL_SECONDS="0.1",
               PALLET_LOG_LEVEL="warning")
    env.pop("PALLET_CONFIG", None)
    log_path = data / "server.log"
    with open(log_path, "wb") as log:
        process = subprocess.Popen([sys.executable, "-m", "pallet.cli.main", "serve"], env=env,
                                   stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_until_ready(url, process, log_path)
        yield url
    finally:
        stop(process)


def _wait_until_ready(url: str, process: subprocess.Popen, log_path: Path) -> None:
    deadline = time.monotonic() + SERVER_START_SECONDS
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"pallet serve exited:\n{log_path.read_text()}")
        try:
            if httpx.get(f"{url}/api/v1/status", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise AssertionError(f"pallet serve did not answer in {SERVER_START_SECONDS} s:\n"
                         f"{log_path.read_text()}")


@pytest.fixture(scope="module")
def cli_env(server, tmp_path_factory):
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("PALLET_") or k == "PALLET_TEST_DATABASE_URL"}
    env.update(PALLET_URL=server, PALLET_USERNAME="admin", PALLET_PASSWORD=PASSWORD,
               XDG_CONFIG_HOME=str(tmp_path_factory.mktemp("config")), COLUMNS="200")
    return env


@pytest.fixture(scope="module")
def pallet(cli_env):
    """Run the CLI: pallet("repository", "list", expect=0) -> CompletedProcess."""
    def run(*args: str, expect: int = 0, input: str | None = None, **env: str):
        result = subprocess.run([sys.executable, "-m", "pallet.cli.main", *map(str, args)],
                                env={**cli_env, **env}, capture_output=True, text=True,
                                input=input, timeout=60)
        assert result.returncode == expect, (args, result.stdout, result.stderr)
        assert "Traceback" not in result.stderr, result.stderr
        return result
    return run


@pytest.fixture(scope="module")
def pallet_json(pallet):
    return lambda *args, **kw: json.loads(pallet(*args, "--json", **kw).stdout)


@pytest.fixture(scope="module")
def api(server):
    with httpx.Client(base_url=f"{server}/api/v1", auth=("admin", PASSWORD)) as client:
        yield client


def _file(tmp_path: Path, name: str, size: int) -> tuple[Path, str]:
    path = tmp_path / name
    path.write_bytes(os.urandom(size))
    return path, hashlib.sha256(path.read_bytes()).hexdigest()


# Pure pieces: no server needed.

def test_missing_ranges_and_chunks():
    assert missing_ranges([], 10) == [(0, 9)]
    assert missing_ranges([[0, 9]], 10) == []
    assert missing_ranges([[2, 3], [6, 7]], 10) == [(0, 1), (4, 5), (8, 9)]
    assert missing_ranges([], 0) == []
    assert list(chunks([(0, 9), (20, 24)], 4)) == [(0, 3), (4, 7), (8, 9), (20, 23), (24, 24)]


def test_client_settings_priority(tmp_path):
    config = tmp_path / "cli.toml"
    config.write_text('url = "http://file:1"\nusername = "filer"\npassword = "p"\n')
    env = {"PALLET_CLI_CONFIG": str(config)}
    assert load_config({}, env) == ClientConfig("http://file:1", "filer", "p")
    env.update(PALLET_URL="http://env:2/", PALLET_TOKEN="t")
    assert load_config({}, env) == ClientConfig("http://env:2", token="t")
    assert load_config({"username": "cli", "password": "q"}, env) == \
        ClientConfig("http://env:2", "cli", "q")
    assert load_config({}, {"XDG_CONFIG_HOME": str(tmp_path / "none")}) == \
        ClientConfig(DEFAULT_URL)
    with pytest.raises(ClientError, match="not a readable file"):
        load_config({}, {"PALLET_CLI_CONFIG": str(tmp_path / "missing.toml")})
    config.write_text('url = "http://file:1"\nuser = "typo"\n')
    with pytest.raises(ClientError, match="unknown keys: user"):
        load_config({}, env)


def test_client_turns_failures_into_sentences():
    def answer(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/down"):
            raise httpx.ConnectError("connection refused")
        if request.url.path.endswith("/proxy"):
            return httpx.Response(502, text="<html>bad gateway</html>")
        return httpx.Response(401, json={"error": {"code": "unauthorized", "details": {},
                                                   "message": "authentication required"}})
    client = Client(ClientConfig("http://pallet.test"), transport=httpx.MockTransport(answer))
    with pytest.raises(ClientError, match="^cannot reach the Pallet server at "
                                          "http://pallet.test: connection refused$"):
        client.get("down")
    with pytest.raises(ClientError, match="answered 502 Bad Gateway$"):
        client.get("proxy")
    with pytest.raises(ClientError, match=r"required \(set PALLET_USERNAME") as refused:
        client.get("me")
    assert (refused.value.status, refused.value.code) == (401, "unauthorized")


def test_client_follows_next_links_on_its_own_host():
    seen = []

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(str(request.url))
        offset = int(request.url.params.get("offset", 0))
        following = f"http://internal:8000/api/v1/things?limit=2&offset={offset + 2}"
        return httpx.Response(200, json={"count": 5, "previous": None,
                                         "next": following if offset + 2 < 5 else None,
                                         "results": list(range(offset, min(offset + 2, 5)))})
    client = Client(ClientConfig("http://pallet.test"), transport=httpx.MockTransport(answer))
    assert client.page("things", name="x")["results"] == [0, 1, 2, 3, 4]
    assert all(url.startswith("http://pallet.test/api/v1/things?") for url in seen)
    assert client.page("things", limit=2, offset=2)["results"] == [2, 3]


# Against the server.

def test_status(pallet, pallet_json):
    assert "database:" in pallet("status").stdout
    status = pallet_json("status")
    assert "file" in status["content_types"] and status["schema_current"] is True


def test_repository_lifecycle(pallet, pallet_json):
    created = pallet_json("repository", "create", "lifecycle", "--description", "first")
    assert (created["name"], created["latest_version"]) == ("lifecycle", 0)
    assert "lifecycle" in pallet("repository", "list", "--name-contains", "lifec").stdout
    listed = pallet_json("repository", "list", "--name-contains", "lifec")
    assert [r["name"] for r in listed["results"]] == ["lifecycle"]
    updated = pallet_json("repository", "update", "lifecycle", "--description", "second",
                          "--retain-versions", "3")
    assert (updated["description"], updated["retain_versions"]) == ("second", 3)
    assert pallet_json("repository", "update", "lifecycle", "--keep-all-versions",
                       "--new-name", "renamed")["retain_versions"] is None
    assert "renamed" in pallet("repository", "show", "renamed").stdout
    assert "deleted" in pallet("repository", "delete", "renamed").stdout
    pallet("repository", "show", "renamed", expect=1)


def test_upload_versions_diff_and_content(pallet, pallet_json, tmp_path):
    pallet("repository", "create", "web")
    big, big_sha = _file(tmp_path, "big.bin", 300_000)
    small, small_sha = _file(tmp_path, "notes.txt", 100)
    first = pallet_json("upload", "file", big, "--repository", "web", "--relative-path",
                        "releases/big.bin", "--chunk-size", 32768, "--parallel", 4)
    assert first["artifact"]["sha256"] == big_sha and first["artifact"]["size"] == 300_000
    assert first["task"]["result"]["version"] == 1
    second = pallet("upload", "file", small, "--repository", "web")
    assert "created version 2" in second.stdout and small_sha in second.stdout

    versions = pallet_json("version", "list", "web")
    assert [v["number"] for v in versions["results"]] == [2, 1, 0]
    assert pallet_json("version", "show", "web", 2)["counts"]["file"]["present"] == 2
    assert pallet_json("version", "diff", "web", 0, 2)["counts"]["file"] == \
        {"added": 2, "removed": 0}
    added = pallet_json("version", "diff", "web", 1, 2, "--list", "added")
    assert [u["fields"]["relative_path"] for u in added["results"]] == ["notes.txt"]

    def paths(*args):
        return sorted(u["fields"]["relative_path"]
                      for u in pallet_json("content", "list", *args)["results"])
    assert paths("--repository", "web", "--version", 1) == ["releases/big.bin"]
    assert paths("--repository", "web") == ["notes.txt", "releases/big.bin"]
    assert paths("--repository", "web", "--path-prefix", "releases/") == ["releases/big.bin"]
    assert paths("--relative-path", "notes.txt") == ["notes.txt"]

    removed = pallet("repository", "modify", "web", "--remove", first["content"]["id"])
    assert "created version 3" in removed.stdout
    assert paths("--repository", "web") == ["notes.txt"]
    ids = tmp_path / "ids.txt"
    ids.write_text(f"# units to add back\n{first['content']['id']}\n\n")
    assert "created version 4" in pallet("repository", "modify", "web", "--add-from",
                                         ids).stdout
    assert "releases/big.bin" in pallet("content", "show", first["content"]["id"]).stdout


def test_no_wait_then_task_commands(pallet, pallet_json, tmp_path):
    pallet("repository", "create", "later")
    queued = pallet_json("repository", "modify", "later", "--remove-all", "--no-wait")
    assert queued["state"] in ("waiting", "running", "completed")
    assert pallet_json("task", "wait", queued["id"])["state"] == "completed"
    shown = pallet_json("task", "show", queued["id"])
    assert (shown["name"], shown["result"]) == ("repository.modify", {"version": None})
    later = pallet("repository", "modify", "later", "--no-wait").stdout
    assert re.match(r"task \d+ queued: /api/v1/tasks/\d+ ", later)
    listed = pallet_json("task", "list", "--name", "repository.modify", "--limit", 2)
    assert len(listed["results"]) == 2 and listed["count"] >= 2
    assert "repository.modify" in pallet("task", "list", "--state", "completed").stdout


def test_resume_sends_only_the_missing_bytes(pallet, pallet_json, api, tmp_path):
    path, sha = _file(tmp_path, "partial.bin", 200_000)
    data = path.read_bytes()
    upload = api.post("/uploads", json={"size": len(data)}).json()
    api.put(f"/uploads/{upload['id']}", content=data[50_000:150_000],
            headers={"Content-Range": f"bytes 50000-149999/{len(data)}"}).raise_for_status()
    assert pallet_json("upload", "show", upload["id"])["received"] == [[50_000, 149_999]]
    assert upload["id"] in [u["id"] for u in pallet_json("upload", "list")["results"]]

    result = pallet("upload", "file", path, "--resume", upload["id"], "--chunk-size", 40_000,
                    "--artifact-only", "--json")
    assert "sending 100000 of 200000 bytes in 4 chunks" in result.stderr
    assert json.loads(result.stdout)["artifact"]["sha256"] == sha
    assert pallet("upload", "show", upload["id"], expect=1).stderr.startswith("error: ")
    abandoned = api.post("/uploads", json={"size": 10}).json()
    assert "deleted" in pallet("upload", "delete", abandoned["id"]).stdout


def test_repair_reports(pallet, pallet_json, tmp_path):
    pallet("repository", "create", "fixme")
    path, _ = _file(tmp_path, "a.txt", 1000)
    pallet("upload", "file", path, "--repository", "fixme")
    report = pallet_json("version", "repair", "fixme", 1)["result"]
    assert (report["checked"], report["missing"], report["corrupt"]) == (1, 0, 0)
    whole = pallet_json("repository", "repair", "fixme")
    assert whole["group"]["states"] == {"completed": 2}
    assert sorted(t["result"]["version"] for t in whole["tasks"]) == [0, 1]


def test_failures_are_one_clear_line(pallet, server):
    missing = pallet("repository", "show", "no-such-repository", expect=1)
    assert missing.stderr == "error: there is no repository named 'no-such-repository'\n"
    wrong = pallet("repository", "list", expect=1, PALLET_PASSWORD="not-the-password")
    assert wrong.stderr == "error: wrong user name or password\n"
    nobody = pallet("repository", "list", expect=1, PALLET_USERNAME="", PALLET_PASSWORD="")
    assert "PALLET_USERNAME" in nobody.stderr
    away = pallet("status", expect=1, PALLET_URL="http://127.0.0.1:9")
    assert away.stderr.startswith("error: cannot reach the Pallet server at "
                                  "http://127.0.0.1:9")
    failed = pallet("repository", "modify", "web", "--add", 987654, expect=1)
    assert "failed:" in failed.stderr and len(failed.stderr.splitlines()) == 1
    for verb in ("--add", "--remove"):  # a unit that does not exist, either way
        failed = pallet("repository", "modify", "web", verb, 987654, expect=1)
        assert "do not exist" in failed.stderr


def test_users_and_tokens(pallet, pallet_json):
    pallet("user", "create", "viewer1", "--password", "viewer-password")
    assert pallet_json("user", "show", "viewer1")["roles"] == ["viewer"]
    as_viewer = {"PALLET_USERNAME": "viewer1", "PALLET_PASSWORD": "viewer-password"}
    refused = pallet("repository", "create", "nope", expect=1, **as_viewer)
    assert "may not" in refused.stderr
    token = pallet_json("token", "create", "ci", **as_viewer)
    me = pallet_json("user", "whoami", PALLET_TOKEN=token["token"], PALLET_USERNAME="",
                     PALLET_PASSWORD="")
    assert me["username"] == "viewer1"
    assert [t["name"] for t in pallet_json("token", "list", **as_viewer)] == ["ci"]
    pallet("token", "delete", token["id"], **as_viewer)
    assert pallet_json("user", "update", "viewer1", "--inactive")["is_active"] is False
    assert pallet_json("user", "delete", "viewer1") == {"deleted": "/api/v1/users/viewer1"}
    assert "viewer1" not in pallet("user", "list").stdout
