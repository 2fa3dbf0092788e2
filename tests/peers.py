"""Peers that misbehave, on 127.0.0.1: one that accepts connections and never says a word,
and one that answers every request with the same status and body."""

from __future__ import annotations

import socket
import threading
import time


class _Listener:
    """A TCP server on 127.0.0.1 handing each connection to `serve`, in a thread."""

    def __init__(self) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.listener.getsockname()[1]}"
        self.connections: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                connection, _ = self.listener.accept()
            except OSError:
                return
            self.connections.append(connection)
            threading.Thread(target=self.serve, args=(connection,), daemon=True).start()

    def serve(self, connection: socket.socket) -> None:
        pass  # kept open, never answered

    def close(self) -> None:
        self.listener.close()
        for connection in self.connections:
            connection.close()


class Silent(_Listener):
    """Accepts every connection and never sends a byte."""

    def wait_for(self, count: int, timeout: float = 10) -> None:
        deadline = time.monotonic() + timeout
        while len(self.connections) < count:
            assert time.monotonic() < deadline, f"{len(self.connections)} of {count} connected"
            time.sleep(0.02)


class Answering(_Listener):
    """Answers every request with `status` and `body`, then closes the connection."""

    def __init__(self, status: int, body: bytes, content_type: str = "text/plain") -> None:
        self.answer = (f"HTTP/1.1 {status} Whatever\r\nContent-Type: {content_type}\r\n"
                       f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
                       ).encode() + body
        super().__init__()

    def serve(self, connection: socket.socket) -> None:
        with connection:
            connection.settimeout(5)
            try:
                received = b""
                while b"\r\n\r\n" not in received:  # the request's head; its body unread
                    block = connection.recv(65536)
                    if not block:
                        return
                    received += block
                connection.sendall(self.answer)
            except OSError:
                pass
