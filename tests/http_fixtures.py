"""A real HTTP file server for tests, on 127.0.0.1, with hooks to misbehave.

    server = FileServer(root).start()          # or: with FileServer(root) as server: ...
    server.url                                 # "http://127.0.0.1:PORT/"
    server.fail("/a.txt", status=500, times=2) # the next 2 requests of /a.txt answer 500
    server.stop()

Hooks (each keyed by the URL path, e.g. "/repo/a.txt"): `fail` (a status for the next N
requests), `corrupt` (other bytes, with their own length), `stall` (headers, part of the
body, then silence), `redirect_loop`, `redirect`, `huge_length` (announce a length, send
nothing), `without_length` (no Content-Length: the body ends at close), `slow` (a pause
before answering), and `reset()` to forget them all. Server-wide: `require_auth(user, password)`,
`require_proxy_auth(user, password)`; a request for an absolute URI (as a client sends to a
proxy) is served from the same tree, so the server doubles as an HTTP forward proxy.
`requests` records every request (method, path, headers, proxied). With `tls=make_tls(dir)`
it speaks HTTPS with a certificate for 127.0.0.1 from a test CA made with `openssl`; with
`require_client_cert=True` it also asks for a client certificate from that CA.

`write_repository(root, files)` writes files and a PULP_MANIFEST listing them.

Threads are daemons; `stop()` wakes stalled handlers and closes the socket. The pytest
fixture `file_server` starts servers that stop at the end of the test.
"""

from __future__ import annotations

import base64
import hashlib
import posixpath
import ssl
import subprocess
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Iterator
from urllib.parse import unquote, urlsplit

import pytest

MANIFEST = "PULP_MANIFEST"


# -- files ------------------------------------------------------------------------------------

def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def manifest_line(relative_path: str, data: bytes) -> str:
    return f"{relative_path},{sha256(data)},{len(data)}\n"


def write_repository(root: Path, files: dict[str, bytes], *, extra_lines: str = "",
                     manifest: str = MANIFEST) -> dict[str, str]:
    """Write `files` under `root` and a manifest listing them (plus `extra_lines`, raw).
    Returns {relative_path: sha256}."""
    root.mkdir(parents=True, exist_ok=True)
    for relative_path, data in files.items():
        path = root / relative_path
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    text = "".join(manifest_line(p, d) for p, d in files.items()) + extra_lines
    (root / manifest).write_text(text)
    return {p: sha256(d) for p, d in files.items()}


# -- TLS --------------------------------------------------------------------------------------

@dataclass(frozen=True)
class TlsFiles:
    """A test CA and certificates it signed: the server's for 127.0.0.1, and a client's."""

    directory: Path

    def text(self, name: str) -> str:
        return (self.directory / name).read_text()

    @property
    def ca_cert(self) -> str:
        return self.text("ca.pem")

    @property
    def client_cert(self) -> str:
        return self.text("client.pem")

    @property
    def client_key(self) -> str:
        return self.text("client.key")


def make_tls(directory: Path) -> TlsFiles:
    """Make a CA, a server certificate for IP 127.0.0.1 and a client certificate."""
    directory.mkdir(parents=True, exist_ok=True)
    key = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]

    def openssl(*args: str) -> None:
        subprocess.run(["openssl", *args], cwd=directory, check=True, capture_output=True,
                       timeout=30)

    openssl("req", "-x509", *key, "-keyout", "ca.key", "-out", "ca.pem", "-days", "2",
            "-subj", "/CN=Pallet Test CA",
            "-addext", "basicConstraints=critical,CA:TRUE",
            "-addext", "keyUsage=critical,keyCertSign,cRLSign")
    for name, subject, extensions in (
            ("server", "/CN=127.0.0.1", "subjectAltName=IP:127.0.0.1\n"
                                        "extendedKeyUsage=serverAuth\n"),
            ("client", "/CN=pallet-test-client", "extendedKeyUsage=clientAuth\n")):
        (directory / f"{name}.ext").write_text(
            "basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\n"
            "authorityKeyIdentifier=keyid\n" + extensions)
        openssl("req", *key, "-keyout", f"{name}.key", "-out", f"{name}.csr", "-subj", subject)
        openssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
                "-CAcreateserial", "-out", f"{name}.pem", "-days", "2",
                "-extfile", f"{name}.ext")
    return TlsFiles(directory)


# -- the server -------------------------------------------------------------------------------

@dataclass
class Request:
    method: str
    path: str
    headers: dict[str, str]
    proxied: bool = False


@dataclass
class _Hooks:
    fail: dict[str, list] = field(default_factory=dict)          # path -> [status, times]
    corrupt: dict[str, bytes] = field(default_factory=dict)
    stall: dict[str, float] = field(default_factory=dict)
    redirect: dict[str, str] = field(default_factory=dict)
    huge: dict[str, int] = field(default_factory=dict)
    no_length: set[str] = field(default_factory=set)
    slow: dict[str, float] = field(default_factory=dict)


class FileServer:
    def __init__(self, root: Path, *, tls: TlsFiles | None = None,
                 require_client_cert: bool = False) -> None:
        self.root = Path(root).resolve()
        self.requests: list[Request] = []
        self.hooks = _Hooks()
        self.auth: str | None = None
        self.proxy_auth: str | None = None
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._context = None
        if tls is not None:
            self._context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            self._context.load_cert_chain(tls.directory / "server.pem",
                                          tls.directory / "server.key")
            if require_client_cert:
                self._context.verify_mode = ssl.CERT_REQUIRED
                self._context.load_verify_locations(tls.directory / "ca.pem")
        self._httpd = _Server(("127.0.0.1", 0), _Handler, self)
        self.port = self._httpd.server_address[1]
        scheme = "https" if tls else "http"
        self.url = f"{scheme}://127.0.0.1:{self.port}/"
        self._thread = threading.Thread(target=self._httpd.serve_forever,
                                        kwargs={"poll_interval": 0.05}, daemon=True,
                                        name=f"file-server-{self.port}")

    def start(self) -> "FileServer":
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()
        if self._thread.is_alive():
            self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(5)

    def __enter__(self) -> "FileServer":
        return self.start()

    def __exit__(self, *exc_info) -> None:
        self.stop()

    # -- hooks ------------------------------------------------------------------------------

    def fail(self, path: str, status: int = 500, times: int = 1) -> None:
        """The next `times` requests of `path` answer `status` (times=-1: always)."""
        with self._lock:
            self.hooks.fail[path] = [status, times]

    def corrupt(self, path: str, data: bytes) -> None:
        """Serve `data` (with its own Content-Length) instead of the file."""
        with self._lock:
            self.hooks.corrupt[path] = data

    def stall(self, path: str, seconds: float) -> None:
        """Send the headers and half the body, then nothing for `seconds`."""
        with self._lock:
            self.hooks.stall[path] = seconds

    def slow(self, path: str, seconds: float) -> None:
        """Wait `seconds` before answering (cut short when the server stops)."""
        with self._lock:
            self.hooks.slow[path] = seconds

    def redirect(self, path: str, location: str) -> None:
        with self._lock:
            self.hooks.redirect[path] = location

    def redirect_loop(self, path: str) -> None:
        """`path` redirects to itself, forever."""
        self.redirect(path, path)

    def huge_length(self, path: str, length: int = 1 << 50) -> None:
        """Announce `length` bytes in Content-Length, then send nothing and close."""
        with self._lock:
            self.hooks.huge[path] = length

    def reset(self) -> None:
        """Forget every hook: serve the files plainly again."""
        with self._lock:
            self.hooks = _Hooks()

    def without_length(self, path: str) -> None:
        """Send `path` with no Content-Length: the body ends when the connection closes."""
        with self._lock:
            self.hooks.no_length.add(path)

    def require_auth(self, username: str, password: str) -> None:
        self.auth = _basic(username, password)

    def require_proxy_auth(self, username: str, password: str) -> None:
        self.proxy_auth = _basic(username, password)

    def count(self, path: str) -> int:
        with self._lock:
            return sum(1 for r in self.requests if r.path == path)

    # -- answering --------------------------------------------------------------------------

    def handle(self, handler: "_Handler", head: bool) -> None:
        target = handler.path
        proxied = target.startswith(("http://", "https://"))
        path = urlsplit(target).path if proxied else target.split("?", 1)[0]
        headers = {k.lower(): v for k, v in handler.headers.items()}
        with self._lock:
            self.requests.append(Request(handler.command, path, headers, proxied))
            hooks = self.hooks
            failing = hooks.fail.get(path)
            if failing and failing[1] != 0:
                failing[1] -= 1 if failing[1] > 0 else 0
            else:
                failing = None
            slow = hooks.slow.get(path)
        if proxied and self.proxy_auth and headers.get("proxy-authorization") != self.proxy_auth:
            return handler.answer(407, b"proxy authentication required",
                                  [("Proxy-Authenticate", 'Basic realm="test"')])
        if self.auth and headers.get("authorization") != self.auth:
            return handler.answer(401, b"authentication required",
                                  [("WWW-Authenticate", 'Basic realm="test"')])
        if slow:
            self._stopping.wait(slow)
        if failing:
            return handler.answer(failing[0], f"failing on purpose: {failing[0]}".encode())
        if path in hooks.redirect:
            return handler.answer(302, b"", [("Location", hooks.redirect[path])])
        if path in hooks.huge:
            handler.send_response(200)
            handler.send_header("Content-Length", str(hooks.huge[path]))
            handler.end_headers()
            handler.close_connection = True
            return
        data = hooks.corrupt.get(path)
        if data is None:
            data = self._read(path)
            if data is None:
                return handler.answer(404, b"not found")
        if path in hooks.stall:
            return self._stall(handler, data, hooks.stall[path])
        if path in hooks.no_length:
            handler.send_response(200)
            handler.send_header("Connection", "close")
            handler.end_headers()
            handler.wfile.write(b"" if head else data)
            handler.close_connection = True
            return
        handler.answer(200, b"" if head else data, length=len(data))

    def _read(self, path: str) -> bytes | None:
        relative = posixpath.normpath(unquote(path)).lstrip("/")
        if relative.startswith(".."):
            return None
        file = (self.root / relative).resolve()
        if not file.is_relative_to(self.root) or not file.is_file():
            return None
        return file.read_bytes()

    def _stall(self, handler: "_Handler", data: bytes, seconds: float) -> None:
        handler.send_response(200)
        handler.send_header("Content-Length", str(len(data)))
        handler.end_headers()
        handler.wfile.write(data[:len(data) // 2])
        handler.wfile.flush()
        self._stopping.wait(seconds)
        handler.close_connection = True


def _basic(username: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{username}:{password}".encode()).decode()


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False

    def __init__(self, address, handler, owner: FileServer) -> None:
        self.owner = owner
        super().__init__(address, handler)

    def finish_request(self, request, client_address) -> None:
        # The TLS handshake happens here, in the connection's own thread.
        if self.owner._context is not None:
            try:
                request = self.owner._context.wrap_socket(request, server_side=True)
            except (ssl.SSLError, OSError):
                return
        super().finish_request(request, client_address)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body go as separate writes
    server: _Server

    def do_GET(self) -> None:
        self._guarded(head=False)

    def do_HEAD(self) -> None:
        self._guarded(head=True)

    def _guarded(self, head: bool) -> None:
        try:
            self.server.owner.handle(self, head)
        except (BrokenPipeError, ConnectionResetError, ssl.SSLError):
            self.close_connection = True

    def answer(self, status: int, body: bytes, headers: list[tuple[str, str]] = (),
               length: int | None = None) -> None:
        self.send_response(status)
        for name, value in headers:
            self.send_header(name, value)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(len(body) if length is None else length))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format, *args) -> None:
        pass


@pytest.fixture
def file_server() -> Iterator:
    """file_server(root, **options) -> a started FileServer, stopped after the test."""
    servers: list[FileServer] = []

    def start(root: Path, **options) -> FileServer:
        server = FileServer(root, **options).start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()


__all__ = ["FileServer", "MANIFEST", "Request", "TlsFiles", "file_server", "make_tls",
           "manifest_line", "sha256", "write_repository"]
