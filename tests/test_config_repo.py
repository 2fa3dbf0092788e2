"""`config.repo` beside a yum distribution's metadata (`RepositoryType.generated_files`):
the origin rules as pure functions, the refusal at publish of a file at a generated path,
and over a real `pallet serve` on 127.0.0.1 the file itself, a forged Host header, other
distributions' 404s, and real dnf reading the downloaded file."""

from __future__ import annotations

import configparser
import hashlib
import socket
from pathlib import Path

import httpx
import pytest

from pallet.contentapp.http import request_origin
from pallet.plugin import GeneratedFile, Plugin, RepositoryType, ServedRepository
from pallet.plugins.rpm.publish import config_repo
from tests.conftest import wait_for_task
from tests.factories import file_unit
from tests.http_fixtures import file_server  # noqa: F401 - the fixture
from tests.servers import api_of, completed, servers  # noqa: F401 - the fixture
from tests.rpm_tools import Dnf, build_rpm, make_repository, require, run

API = "/api/v1"
C = "/pallet/content"


# -- the origin and the file, as pure functions ---------------------------------------------

@pytest.mark.parametrize("host", [b"pallet.example", b"pallet.example:8080", b"127.0.0.1:24817",
                                  b"[::1]:24817", b"localhost", b"a-b.c-d.example"])
def test_a_plain_host_makes_the_origin(host):
    assert request_origin("http", host, "") == f"http://{host.decode()}"
    assert request_origin("https", host, "") == f"https://{host.decode()}"


@pytest.mark.parametrize("host", [None, b"", b"evil.example\nname=evil", b"evil.example\r\n",
                                  b"a b", b"evil.example/path", b"user@evil.example",
                                  b"evil.example:80:80", b"-evil.example", b"evil..example",
                                  b"[::1", b"evil.example:port", b"\xc3\xa9.example",
                                  b"evil.example?x", b"evil.example#x", b"a" * 300,
                                  b"evil.example:99999", b"evil.example:0", b"[::1]:70000"])
def test_anything_but_a_plain_host_makes_no_origin(host):
    assert request_origin("http", host, "") is None


def test_the_configured_origin_wins_over_the_request():
    assert request_origin("http", b"internal:8000", "https://pallet.example") == \
        "https://pallet.example"
    assert request_origin("http", b"bad host", "https://pallet.example") == \
        "https://pallet.example"
    assert request_origin("websocket?", b"h", "") == "http://h"  # never another scheme


def served(*metadata: str) -> ServedRepository:
    return ServedRepository(distribution="el9", url="http://h:1/pallet/content/el/9/",
                            repository="el", version=3, metadata=frozenset(metadata))


def test_config_repo_names_the_distribution_and_its_url():
    assert config_repo(served("repodata/repomd.xml", "repodata/x-primary.xml.gz")) == (
        b"[el9]\nname=el9 (Pallet repository el)\nbaseurl=http://h:1/pallet/content/el/9/\n"
        b"enabled=1\ngpgcheck=0\n")
    assert config_repo(served("repodata/repomd.xml", "repodata/repomd.xml.asc",
                              "repodata/repomd.xml.key")).endswith(
        b"gpgcheck=0\nrepo_gpgcheck=1\n"
        b"gpgkey=http://h:1/pallet/content/el/9/repodata/repomd.xml.key\n")
    assert config_repo(served()) is None  # a version served bare: no yum metadata there


# -- a publication may not hold a file where one is generated ------------------------------

def generating_type(runtime, *, writes: str | None) -> None:
    """A type `gen` holding files, whose publisher writes `writes` (if any), and for which
    the content app generates `hello.txt`."""
    def publish(units, options, output):
        if writes is not None:
            with output.open(writes) as target:
                target.write(b"x")

    runtime.plugins.add(Plugin(name=f"gen-{writes}", repository_types=(RepositoryType(
        name="gen", content_types=("file",), publish=publish,
        generated_files={"hello.txt": GeneratedFile(lambda s: f"{s.url}\n".encode())}),)))


def publish_task(client) -> dict:
    response = client.post(f"{API}/publications", json={"repository": "g"})
    assert response.status_code == 202, response.text
    return wait_for_task(client, response.json()["href"])


@pytest.mark.parametrize("writes", ["hello.txt", "hello.txt/inside"])
def test_a_metadata_file_at_a_generated_path_is_refused(client, runtime, workers, writes):
    generating_type(runtime, writes=writes)
    assert client.post(f"{API}/repositories", json={"name": "g", "type": "gen"}
                       ).status_code == 201
    task = publish_task(client)
    assert task["state"] == "failed" and task["error"]["code"] == "path_collision", task
    assert "hello.txt" in task["error"]["message"] and "generates" in task["error"]["message"]


def test_a_content_file_at_a_generated_path_is_refused(client, runtime, workers):
    generating_type(runtime, writes=None)
    assert client.post(f"{API}/repositories", json={"name": "g", "type": "gen"}
                       ).status_code == 201
    unit = file_unit(runtime, "hello.txt", b"mine")
    task = wait_for_task(client, client.post(f"{API}/repositories/g/modify", json={
        "add_content": [unit]}).json()["href"])
    assert task["state"] == "completed", task
    task = publish_task(client)
    assert task["state"] == "failed" and task["error"]["code"] == "path_collision", task
    assert task["error"]["details"]["content_path"] == "hello.txt", task


# -- over a real pallet serve -----------------------------------------------------------------

def created(api: httpx.Client, path: str, body: dict) -> dict:
    response = api.post(path, json=body)
    assert response.status_code == 201, response.text
    return response.json()


def raw_get(port: int, path: str, host: bytes) -> bytes:
    """A GET with exactly this Host header (httpx would refuse to send some)."""
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sock.sendall(b"GET " + path.encode() + b" HTTP/1.1\r\nHost: " + host
                     + b"\r\nConnection: close\r\n\r\n")
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    return answer


def dnf_with_reposdir(dnf: Dnf, reposdir: Path, *args: str):
    """dnf on the Dnf's installroot and configuration, but with `reposdir` as its only
    repositories (Dnf.run writes a repo file of its own)."""
    require("dnf")
    return run(["dnf", f"--installroot={dnf.installroot}",
                f"--config={dnf.config / 'dnf.conf'}", f"--setopt=reposdir={reposdir}",
                f"--setopt=varsdir={dnf.config / 'vars'}", "--releasever=1", "--noplugins",
                "-y", *args], home_dir=dnf.config / "home")


@pytest.mark.slow
def test_config_repo_over_pallet_serve_and_dnf_installs_with_it(servers, file_server,
                                                                tmp_path):
    require("rpmbuild", "createrepo_c", "modifyrepo_c")
    rpms = tmp_path / "rpms"
    b = build_rpm(rpms, "b", "1.0")
    a = build_rpm(rpms, "a", "1.0", requires=["b >= 1.0"])
    upstream = file_server(make_repository(tmp_path / "upstream", [a, b]))
    server = servers.start("pallet")
    api = api_of(server)
    created(api, "/remotes", {"name": "el", "url": upstream.url, "type": "rpm",
                              "policy": "immediate"})
    created(api, "/repositories", {"name": "el", "type": "rpm", "remote": "el",
                                   "autopublish": True})
    completed(api, api.post("/repositories/el/sync", json={}))
    created(api, "/distributions", {"name": "el9", "base_path": "el/9", "repository": "el"})
    created(api, "/distributions", {"name": "el9-v1", "base_path": "el/9-v1",
                                    "repository_version": {"repository": "el", "version": 1}})
    created(api, "/repositories", {"name": "files", "type": "file"})
    created(api, "/distributions", {"name": "files", "base_path": "files",
                                    "repository": "files"})
    base = f"{server.url}{C}/el/9/"

    response = httpx.get(f"{base}config.repo")
    assert response.status_code == 200, response.text
    expected = (f"[el9]\nname=el9 (Pallet repository el)\nbaseurl={base}\nenabled=1\n"
                f"gpgcheck=0\n").encode()
    assert response.content == expected
    assert response.headers["content-type"] == "text/plain; charset=utf-8"
    assert response.headers["content-length"] == str(len(expected))
    tag = f'"{hashlib.sha256(expected).hexdigest()}"'
    assert response.headers["etag"] == tag
    head = httpx.head(f"{base}config.repo")
    assert head.status_code == 200 and head.content == b""
    assert head.headers["content-length"] == str(len(expected))
    assert head.headers["etag"] == tag
    assert httpx.get(f"{base}config.repo", headers={"if-none-match": tag}).status_code == 304
    parsed = configparser.ConfigParser()
    parsed.read_string(response.text)
    assert parsed["el9"]["baseurl"] == base

    # The URL follows the Host header the client used, when it is a plain host[:port].
    other = httpx.get(f"{base}config.repo", headers={"host": "pallet.example:8080"})
    assert other.status_code == 200
    assert b"baseurl=http://pallet.example:8080/pallet/content/el/9/\n" in other.content
    assert other.headers["etag"] != tag

    # A forged Host is refused, never written into the file.
    path = f"{C}/el/9/config.repo"
    for forged in (b"evil.example/x enabled=0", b"evil.example\x0bgpgcheck=0",
                   b"user@evil.example", b"evil.example:80/"):
        answer = raw_get(server.port, path, forged)
        status = answer.split(b" ", 2)[1]
        assert status == b"400", answer
        assert b"evil" not in answer.partition(b"\r\n\r\n")[2], answer
    assert raw_get(server.port, path, b"127.0.0.1:1").split(b" ", 2)[1] == b"200"

    # Only where yum metadata is served: not for a file repository, nor a version served
    # bare; and only at the distribution's top.
    assert httpx.get(f"{server.url}{C}/files/config.repo").status_code == 404
    assert httpx.head(f"{server.url}{C}/files/config.repo").status_code == 404
    assert httpx.get(f"{server.url}{C}/el/9-v1/config.repo").status_code == 404
    assert httpx.get(f"{base}repodata/config.repo").status_code == 404
    assert httpx.get(f"{base}repodata/repomd.xml").status_code == 200

    # dnf with nothing but the downloaded file in its reposdir.
    reposdir = tmp_path / "reposdir"
    reposdir.mkdir()
    (reposdir / "pallet.repo").write_bytes(response.content)
    dnf = Dnf(tmp_path / "root")
    listed = dnf_with_reposdir(dnf, reposdir, "repolist").stdout
    assert "el9" in listed, listed
    dnf_with_reposdir(dnf, reposdir, "install", "a")
    assert dnf.installed() == {"a-0:1.0-1.noarch", "b-0:1.0-1.noarch"}


@pytest.mark.slow
def test_config_repo_through_pallet_content_app(tmp_path, servers, file_server):
    """The scale-out content process (Granian) serves it too, from the same database."""
    import subprocess
    import sys

    from tests.processes import free_port, stop, wait_until

    require("rpmbuild", "createrepo_c")
    upstream = file_server(make_repository(tmp_path / "upstream",
                                           [build_rpm(tmp_path / "rpms", "c", "1.0")]))
    server = servers.start("pallet")
    api = api_of(server)
    created(api, "/remotes", {"name": "el", "url": upstream.url, "type": "rpm"})
    created(api, "/repositories", {"name": "el", "type": "rpm", "remote": "el",
                                   "autopublish": True})
    completed(api, api.post("/repositories/el/sync", json={}))
    created(api, "/distributions", {"name": "el", "base_path": "el", "repository": "el"})
    port = free_port()
    env = {k: v for k, v in server.env.items() if k != "PALLET_PORT"}
    log_path = tmp_path / "content-app.log"
    with open(log_path, "wb") as log:
        process = subprocess.Popen([sys.executable, "-m", "pallet.cli.main", "content-app",
                                    "--host", "127.0.0.1", "--port", str(port)],
                                   env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}{C}/el/config.repo"
    try:
        def answers():
            assert process.poll() is None, log_path.read_text()
            try:
                return httpx.get(url, timeout=1).status_code == 200
            except httpx.HTTPError:
                return False

        wait_until(answers, 60, f"pallet content-app did not answer:\n{log_path.read_text()}")
        response = httpx.get(url)
        assert f"baseurl=http://127.0.0.1:{port}{C}/el/\n".encode() in response.content
        assert response.headers["content-type"] == "text/plain; charset=utf-8"
        assert httpx.head(url).headers["content-length"] == str(len(response.content))
        assert raw_get(port, f"{C}/el/config.repo", b"evil.example/x").split(b" ", 2)[1] \
            == b"400"
    finally:
        stop(process)
