"""Password hashing (scrypt) with a short-lived cache of successful checks.

A slow hash is the point of password storage, but paying it on every API request is what
made Pulp's basic auth cost a third of a second of CPU per call. A verified
(user, password, stored hash) triple is remembered for `auth_cache_seconds`; changing the
password changes the stored hash, which retires the cached entry.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import threading
import time

N, R, P = 2**14, 8, 1


def hash_password(password: str) -> str:
    salt = secrets.token_bytes(16)
    derived = hashlib.scrypt(password.encode(), salt=salt, n=N, r=R, p=P, dklen=32)
    return "scrypt${}${}${}${}${}".format(N, R, P, base64.b64encode(salt).decode(),
                                          base64.b64encode(derived).decode())


def check_password(password: str, stored: str) -> bool:
    try:
        scheme, n, r, p, salt, derived = stored.split("$")
        if scheme != "scrypt":
            return False
        actual = hashlib.scrypt(password.encode(), salt=base64.b64decode(salt), n=int(n),
                                r=int(r), p=int(p), dklen=32)
        return hmac.compare_digest(actual, base64.b64decode(derived))
    except (ValueError, TypeError):
        return False


class VerifiedCache:
    def __init__(self, seconds: float, limit: int = 10_000) -> None:
        self.seconds, self.limit = seconds, limit
        self._entries: dict[bytes, float] = {}
        self._lock = threading.Lock()
        self._secret = secrets.token_bytes(32)  # keys reveal nothing if memory is dumped

    def _key(self, username: str, password: str, stored: str) -> bytes:
        return hmac.new(self._secret, "\0".join((username, password, stored)).encode(),
                        hashlib.sha256).digest()

    def check(self, username: str, password: str, stored: str) -> bool:
        key = self._key(username, password, stored)
        now = time.monotonic()
        with self._lock:
            expires = self._entries.get(key)
            if expires is not None and expires > now:
                return True
        if not check_password(password, stored):
            return False
        if self.seconds > 0:
            with self._lock:
                if len(self._entries) >= self.limit:
                    self._entries = {k: v for k, v in self._entries.items() if v > now}
                    if len(self._entries) >= self.limit:
                        self._entries.clear()
                self._entries[key] = now + self.seconds
        return True


def new_token() -> str:
    return "pallet_" + secrets.token_urlsafe(32)


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def generate_password() -> str:
    return secrets.token_urlsafe(18)
