"""Every outgoing HTTP client is built here: with its connect and read timeouts (required:
there are no defaults to forget), and reachable by the running task's cancel.

- `http_client(...)`: a blocking httpx client (replication: pull, push). On cancel its open
  sockets are shut down, which wakes a thread blocked reading or writing one (closing them
  would not), and the request fails at once.
- `aiohttp_session(...)`: an aiohttp session (the downloader: sync, on-demand). Entered in a
  task, `cancels_this_task()` cancels the coroutine that uses it.

A wait that is neither registers itself with `pallet.tasks.cancel.on_cancel`.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl
import threading
from typing import Any, Iterator

import aiohttp
import httpcore
import httpx

from pallet.tasks.cancel import on_cancel


# -- blocking clients (httpx) -----------------------------------------------------------------

def http_client(*, base_url: str, connect_timeout: float, read_timeout: float,
                tls: ssl.SSLContext, headers: dict[str, str] | None = None,
                auth: Any = None) -> httpx.Client:
    """A client whose requests give up after `connect_timeout` s connecting and
    `read_timeout` s without a byte (writing too: a peer that stops reading is as silent)."""
    timeout = httpx.Timeout(read_timeout, connect=connect_timeout)
    return httpx.Client(base_url=base_url, headers=headers, auth=auth, timeout=timeout,
                        transport=_CancelableTransport(tls), trust_env=False)


class _CancelableTransport(httpx.HTTPTransport):
    def __init__(self, tls: ssl.SSLContext) -> None:
        super().__init__(verify=tls, trust_env=False)
        self._sockets = _Sockets()
        # httpx builds its pool on httpcore's default backend and offers no way to name
        # another: the same pool, on the same backend that also keeps its sockets.
        self._pool.close()
        self._pool = httpcore.ConnectionPool(
            ssl_context=tls, network_backend=self._sockets, max_connections=100,
            max_keepalive_connections=20, keepalive_expiry=5.0)  # httpx's own limits
        self._forget = on_cancel(self._sockets.shut_down)

    def close(self) -> None:
        self._forget()
        super().close()


class _Sockets(httpcore.NetworkBackend):
    """httpcore's blocking backend, remembering the streams it opened to shut them down."""

    def __init__(self) -> None:
        self._backend = httpcore.SyncBackend()
        self._streams: list[_Stream] = []
        self._lock = threading.Lock()
        self._shut = False

    def connect_tcp(self, host, port, timeout=None, local_address=None, socket_options=None):
        stream = _Stream(self._backend.connect_tcp(host, port, timeout, local_address,
                                                   socket_options))
        with self._lock:
            self._streams = [s for s in self._streams if not s.closed]
            self._streams.append(stream)
            shut = self._shut
        if shut:  # canceled while connecting
            stream.shut_down()
        return stream

    def connect_unix_socket(self, path, timeout=None, socket_options=None):
        return self._backend.connect_unix_socket(path, timeout, socket_options)

    def sleep(self, seconds: float) -> None:
        self._backend.sleep(seconds)

    def shut_down(self) -> None:
        with self._lock:
            self._shut = True
            streams = list(self._streams)
        for stream in streams:
            stream.shut_down()


class _Stream(httpcore.NetworkStream):
    def __init__(self, inner: httpcore.NetworkStream) -> None:
        self._inner = inner
        self.closed = False

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return self._inner.read(max_bytes, timeout)

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        self._inner.write(buffer, timeout)

    def close(self) -> None:
        self.closed = True
        self._inner.close()

    def start_tls(self, ssl_context, server_hostname=None, timeout=None) -> "_Stream":
        self._inner = self._inner.start_tls(ssl_context, server_hostname, timeout)
        return self

    def get_extra_info(self, info: str) -> Any:
        return self._inner.get_extra_info(info)

    def shut_down(self) -> None:
        sock = self._inner.get_extra_info("socket")
        with contextlib.suppress(OSError, AttributeError):
            # The plain socket's shutdown, also under TLS: SSLSocket's would drop its
            # state under the reading thread's feet.
            socket.socket.shutdown(sock, socket.SHUT_RDWR)


# -- asyncio clients (aiohttp) ----------------------------------------------------------------

def aiohttp_session(*, connect_timeout: float, read_timeout: float,
                    total_timeout: float | None, tls: ssl.SSLContext, limit: int,
                    headers: dict[str, str], read_bufsize: int) -> aiohttp.ClientSession:
    """A session whose requests give up after `connect_timeout` s connecting,
    `read_timeout` s without a byte, and `total_timeout` s in all (None: no limit)."""
    return aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=limit, ssl=tls),
        timeout=aiohttp.ClientTimeout(total=total_timeout, sock_connect=connect_timeout,
                                      sock_read=read_timeout),
        headers=headers, auto_decompress=False, trust_env=False, read_bufsize=read_bufsize)


@contextlib.contextmanager
def cancels_this_task() -> Iterator[None]:
    """While inside: a cancel of the running task cancels the coroutine that entered."""
    loop, current = asyncio.get_running_loop(), asyncio.current_task()

    def cancel() -> None:
        with contextlib.suppress(RuntimeError):  # the loop ended meanwhile
            loop.call_soon_threadsafe(current.cancel)
    forget = on_cancel(cancel)
    try:
        yield
    finally:
        forget()
