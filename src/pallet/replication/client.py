"""Talking to another Pallet: its API over HTTP(S), with the peer's credentials and TLS, and
every failure turned into one clear sentence naming the peer.

Streams go both ways without touching the disk: `stream` gives a response's body as a
blocking file for the archive reader, `push` sends an iterator of blocks as a request body.
"""

from __future__ import annotations

import json
import re
import ssl
from contextlib import contextmanager
from typing import Any, Iterable, Iterator

import httpx

from pallet.errors import PalletError
from pallet.remotes.downloader import tls_context
from pallet.remotes.outgoing import http_client
from pallet.replication.models import Peer

BLOCK = 1 << 20
MAX_ERROR = 64 << 10  # of an error answer, this much is read
EXCERPT = 160  # of what a peer sent, this many characters go into an error message
PEER_CODE = re.compile(r"[a-z][a-z_]{0,63}")  # a peer's error code, passed on if it is one


class PeerError(PalletError):
    """The other Pallet could not be reached, refused us, or failed."""

    status, code = 502, "peer_failed"


class PeerClient:
    def __init__(self, peer: Peer, role: str) -> None:
        self.label = f"{role} {peer.name!r} ({peer.base_url})"
        # identity: a compressed body could expand far beyond what was sent.
        headers = {"Accept-Encoding": "identity"}
        if peer.token:
            headers["Authorization"] = f"Bearer {peer.token}"
        auth = (peer.username, peer.password or "") if peer.username and not peer.token \
            else None
        context = tls_context(ca_cert=peer.ca_cert, client_cert=peer.client_cert,
                              client_key=peer.client_key, verify=peer.tls_validation)
        self.timeouts = peer.connect_timeout, peer.read_timeout
        self.http = http_client(base_url=peer.base_url.rstrip("/") + "/api/v1",
                                connect_timeout=peer.connect_timeout,
                                read_timeout=peer.read_timeout, tls=context, headers=headers,
                                auth=auth)

    def close(self) -> None:
        self.http.close()

    def __enter__(self) -> "PeerClient":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def get(self, path: str, **params: Any) -> Any:
        with self._errors():
            return self._json(self.http.get(path, params=params))

    def post(self, path: str, body: dict[str, Any]) -> Any:
        with self._errors():
            return self._json(self.http.post(path, json=body))

    @contextmanager
    def stream(self, path: str, body: dict[str, Any]) -> Iterator["ResponseStream"]:
        """POST `body`; the response's body as a blocking binary stream."""
        with self._errors():
            with self.http.stream("POST", path, json=body) as response:
                if response.status_code != 200:
                    self._refuse(response, _head(response))
                if response.headers.get("content-encoding", "identity") != "identity":
                    raise PeerError(f"{self.label} sent a compressed stream, which this "
                                    "server does not accept")
                yield ResponseStream(response, self.label, self.timeouts)

    def push(self, path: str, blocks: Iterable[bytes]) -> Any:
        """POST `blocks` as a streamed (chunked) request body; the JSON answer."""
        with self._errors():
            return self._json(self.http.post(
                path, content=blocks, headers={"Content-Type": "application/x-tar"}))

    def _json(self, response: httpx.Response) -> Any:
        if not 200 <= response.status_code < 300:
            self._refuse(response, response.content[:MAX_ERROR])
        if not response.content:
            return None
        try:
            return response.json()
        except ValueError:
            raise PeerError(f"{self.label} did not answer with JSON (is it a Pallet?): "
                            f"{excerpt(response.content)}") from None

    def _refuse(self, response: httpx.Response, body: bytes) -> None:
        """Raise the PeerError a non-success answer means: its status, and a short escaped
        excerpt of what came (it may not be a Pallet answering, or not an honest one)."""
        try:
            error = json.loads(body)["error"]
            message, code = excerpt(str(error["message"])), error.get("code")
        except (ValueError, KeyError, TypeError):
            message, code = excerpt(body or response.reason_phrase), None
        if not (isinstance(code, str) and PEER_CODE.fullmatch(code)):
            code = "peer_failed"
        if response.status_code == 401:
            raise PeerError(f"{self.label} refused the credentials (401 {message}): check "
                            "the username and password or the token",
                            code="peer_unauthorized")
        if response.status_code == 403:
            raise PeerError(f"{self.label} does not let this user do that (403 {message}): "
                            "give the user the exporter role there (the importer role to "
                            "push)", code="peer_forbidden")
        raise PeerError(f"{self.label} answered {response.status_code}: {message}",
                        code=code, details={"status": response.status_code})

    @contextmanager
    def _errors(self) -> Iterator[None]:
        try:
            yield
        except httpx.HTTPError as exc:
            raise connection_error(self.label, exc, self.timeouts) from None


def excerpt(text: str | bytes, limit: int = EXCERPT) -> str:
    """At most `limit` characters of what a peer sent, each unprintable one escaped (a
    terminal showing the error then shows only text)."""
    if isinstance(text, bytes):
        text = text[:4 * limit].decode("utf-8", errors="replace")
    shown = "".join(c if c.isprintable() else c.encode("unicode_escape").decode("ascii")
                    for c in text[:limit])
    return shown + ("…" if len(text) > limit else "")


def _head(response: httpx.Response) -> bytes:
    """The start of a streamed response's body, for its error message (never all of it)."""
    head = b""
    for block in response.iter_raw():
        head += block
        if len(head) >= MAX_ERROR:
            break
    return head[:MAX_ERROR]


def connection_error(label: str, exc: httpx.HTTPError,
                     timeouts: tuple[float, float]) -> PeerError:
    reason = exc.__context__ if isinstance(exc.__context__, ssl.SSLError) else None
    if isinstance(reason, ssl.SSLCertVerificationError) or "CERTIFICATE_VERIFY_FAILED" in str(exc):
        detail = getattr(reason, "verify_message", None) or str(exc)
        return PeerError(f"the TLS certificate of {label} is not trusted ({detail}): give its "
                         "CA certificate (ca_cert), or turn TLS validation off",
                         code="peer_untrusted")
    if isinstance(exc, httpx.ConnectError):
        return PeerError(f"cannot connect to {label}: {exc}", code="peer_unreachable")
    if isinstance(exc, httpx.ConnectTimeout):
        return PeerError(f"no connection to {label} within {timeouts[0]:g} s "
                         "(connect_timeout)", code="peer_timeout")
    if isinstance(exc, httpx.TimeoutException):
        return PeerError(f"{label} sent nothing for {timeouts[1]:g} s (read_timeout)",
                         code="peer_timeout")
    return PeerError(f"the connection to {label} broke: {exc or type(exc).__name__}",
                     code="peer_broken")


class ResponseStream:
    """A response's body, read as it arrives, as the archive reader reads a file. A broken
    connection (the peer stopped, the network failed) is a PeerError, never a short read."""

    def __init__(self, response: httpx.Response, label: str,
                 timeouts: tuple[float, float]) -> None:
        self.label, self.timeouts = label, timeouts
        self._blocks = response.iter_bytes(BLOCK)
        self._pending = memoryview(b"")
        self.received = 0

    def read(self, n: int = -1) -> bytes:
        if not self._pending:
            try:
                block = next(self._blocks, b"")
            except httpx.HTTPError as exc:
                error = connection_error(self.label, exc, self.timeouts)
                error.message = (f"{error.message} after {self.received} bytes; nothing was "
                                 "replicated, and a retry reuses what was stored")
                error.args = (error.message,)
                raise error from None
            self._pending = memoryview(block)
        if n < 0:
            n = len(self._pending)
        data, self._pending = self._pending[:n], self._pending[n:]
        self.received += len(data)
        return bytes(data)
