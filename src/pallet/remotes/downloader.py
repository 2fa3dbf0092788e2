"""The one owner of HTTP (and `file://`) for remotes.

`Downloader(config, settings, storage)` is an async context manager holding one aiohttp
session built from a `RemoteConfig` (a snapshot of a remote's settings, taken in a read
session and used outside it): connection limit, timeouts, basic auth, extra headers, proxy,
TLS. Every request is retried with exponential back-off on connection errors, timeouts and
5xx answers; never on other 4xx answers, TLS failures or bytes that fail verification.

Nothing unverified reaches the artifact store: bytes go through a verifying storage writer
and are committed only under the digest the index announced.

- `fetch_index(url)`: a remote's index, into a temporary file (the caller deletes it).
- `download(file)`: one file into the store; returns (sha256, size). A file announced by
  another checksum only (`file.sha256` empty, `file.checksum` sha1, md5, ...) is verified by
  it and stored by the sha256 of its bytes.
- `stream(file, store=...)`: one file's bytes as they arrive, for the content app; the last
  chunk is held back until the whole body is verified.

Failures are `pallet.errors` exceptions: `DownloadError` (code `download_failed`) naming the
URL and the reason, or `DigestMismatch` (code `digest_mismatch`) when the bytes are not the
ones announced (wrong digest or size).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import os
import random
import shutil
import ssl
import tempfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, AsyncIterator, Awaitable, Callable, Sequence, TypeVar
from urllib.parse import unquote, urlsplit

import aiohttp

import pallet
from pallet.artifacts.storage import ArtifactStorage, DigestMismatch, Writer
from pallet.paths import allowed_path
from pallet.errors import Invalid, PalletError
from pallet.plugin import Checksum, RemoteFile
from pallet.remotes.outgoing import aiohttp_session, cancels_this_task
from pallet.remotes.small_files import SmallFiles
from pallet.settings import Settings

__all__ = ["ALGORITHMS", "DigestMismatch", "DownloadError", "Downloader", "RemoteConfig",
           "announced_algorithm", "local_path", "tls_context"]

MAX_REDIRECTS = 10
RETRY_BASE_SECONDS = 0.2
RETRY_CAP_SECONDS = 5.0
CHUNK = 1 << 20
SMALL_FILE = 1 << 20  # files up to this size are fetched into memory, then stored at once
# Names remotes use for checksum types (yum's "sha" is sha1 in old repositories).
ALGORITHMS = {"sha": "sha1", "sha1": "sha1", "sha224": "sha224", "sha256": "sha256",
              "sha384": "sha384", "sha512": "sha512", "md5": "md5"}
T = TypeVar("T")


class DownloadError(PalletError):
    """A remote file or index could not be fetched (after any retries)."""

    status, code = 502, "download_failed"


def failure(url: str, reason: str, **details: Any) -> DownloadError:
    return DownloadError(f"downloading {url} failed: {reason}",
                         details={"url": url, "reason": reason, **details})


@dataclass(frozen=True)
class RemoteConfig:
    """What the downloader needs of a remote. Secrets stay out of its repr."""

    url: str
    name: str = ""
    download_concurrency: int = 10
    max_retries: int = 3
    connect_timeout: float = 30.0
    read_timeout: float = 60.0
    total_timeout: float | None = None
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    ca_cert: str | None = field(default=None, repr=False)
    client_cert: str | None = field(default=None, repr=False)
    client_key: str | None = field(default=None, repr=False)
    tls_validation: bool = True
    proxy_url: str | None = None
    proxy_username: str | None = None
    proxy_password: str | None = field(default=None, repr=False)
    headers: tuple[tuple[str, str], ...] = ()

    @classmethod
    def from_remote(cls, remote) -> "RemoteConfig":
        """A snapshot of a `Remote` row (usable after its session closed)."""
        return cls(url=remote.url, name=remote.name,
                   download_concurrency=remote.download_concurrency,
                   max_retries=remote.max_retries, connect_timeout=remote.connect_timeout,
                   read_timeout=remote.read_timeout, total_timeout=remote.total_timeout,
                   username=remote.username, password=remote.password,
                   ca_cert=remote.ca_cert, client_cert=remote.client_cert,
                   client_key=remote.client_key, tls_validation=remote.tls_validation,
                   proxy_url=remote.proxy_url, proxy_username=remote.proxy_username,
                   proxy_password=remote.proxy_password,
                   headers=tuple(sorted((remote.headers or {}).items())))


# -- TLS and local paths (also used to validate remotes when they are saved) -----------------

def tls_context(*, ca_cert: str | None = None, client_cert: str | None = None,
                client_key: str | None = None, verify: bool = True) -> ssl.SSLContext:
    """The TLS context for a remote; Invalid naming the field when PEM text is unusable.
    A CA certificate replaces the system's CAs for that remote."""
    try:
        context = ssl.create_default_context(cadata=ca_cert) if ca_cert else \
            ssl.create_default_context()
    except (ssl.SSLError, ValueError) as exc:
        raise Invalid(f"ca_cert is not a usable PEM certificate: {_ssl_reason(exc)}",
                      details={"field": "ca_cert"}) from None
    if not verify:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    if client_cert or client_key:
        _load_client_pair(context, client_cert or "", client_key or "")
    return context


def _load_client_pair(context: ssl.SSLContext, cert: str, key: str) -> None:
    if not cert or not key:
        raise Invalid("client_cert and client_key go together: give both or neither",
                      details={"field": "client_cert" if not cert else "client_key"})
    if "PRIVATE KEY" in cert:
        raise Invalid("client_cert holds a private key: give the key as client_key, which "
                      "is never shown again", details={"field": "client_cert"})
    # ssl loads a certificate chain only from files: private ones, gone at once.
    directory = tempfile.mkdtemp(prefix="pallet-tls-")
    try:
        paths = []
        for name, text in (("cert.pem", cert), ("key.pem", key)):
            path = os.path.join(directory, name)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as out:
                out.write(text)
            paths.append(path)
        context.load_cert_chain(paths[0], paths[1], password=_no_password)
    except _EncryptedKey:
        raise Invalid("client_key is encrypted: give it without a passphrase",
                      details={"field": "client_key"}) from None
    except (ssl.SSLError, ValueError) as exc:
        raise Invalid("client_cert and client_key are not a usable PEM certificate and "
                      f"matching key: {_ssl_reason(exc)}", details={"field": "client_cert"}
                      ) from None
    finally:
        shutil.rmtree(directory, ignore_errors=True)


class _EncryptedKey(Exception):
    pass


def _no_password() -> bytes:
    raise _EncryptedKey()  # never prompt on a terminal for a passphrase


def _ssl_reason(exc: Exception) -> str:
    return getattr(exc, "reason", None) or str(exc) or type(exc).__name__


def local_path(url: str, allowed_dirs: Sequence[Path]) -> Path:
    """The local path of a `file://` URL, links resolved, if it lies under an allowed
    directory (also resolved); else Invalid."""
    parts = urlsplit(url)
    if parts.netloc not in ("", "localhost"):
        raise Invalid(f"{url} names the host {parts.netloc!r}: file URLs read this server's "
                      "own file system, as file:///path", details={"url": url})
    path = Path(unquote(parts.path))
    if not path.is_absolute():
        raise Invalid(f"{url} does not hold an absolute path", details={"url": url})
    try:
        return allowed_path(path, allowed_dirs, setting="allowed_import_dirs")
    except Invalid as exc:
        raise Invalid(f"{url}: {exc.message}", details={"url": url}) from None


# -- the downloader -----------------------------------------------------------------------

class _BadStatus(Exception):
    def __init__(self, status: int, reason: str | None) -> None:
        super().__init__(f"the server answered {status} {reason or ''}".rstrip())
        self.status = status


class Downloader:
    """One remote's HTTP session, limits and TLS. Use as `async with Downloader(...) as d`."""

    def __init__(self, config: RemoteConfig, settings: Settings,
                 storage: ArtifactStorage) -> None:
        self.config, self.settings, self.storage = config, settings, storage
        self._session: aiohttp.ClientSession | None = None
        self._proxy_headers = {"Proxy-Authorization": basic_auth(
            config.proxy_username, config.proxy_password)} if config.proxy_username else None
        # Commits (fsync) and local reads block: they run here, not on the event loop.
        self._pool = ThreadPoolExecutor(max(2, min(config.download_concurrency, 16)),
                                        thread_name_prefix="download")
        self._small_files = SmallFiles(storage)
        self._cancel = contextlib.ExitStack()

    async def __aenter__(self) -> "Downloader":
        config = self.config
        # Loading CAs takes tens of milliseconds: off the event loop (the content app's).
        context = await asyncio.to_thread(
            tls_context, ca_cert=config.ca_cert, client_cert=config.client_cert,
            client_key=config.client_key, verify=config.tls_validation)
        # Identity encoding and no decompression: the bytes hashed are the bytes served.
        headers = {"User-Agent": f"pallet/{pallet.__version__}", "Accept-Encoding": "identity",
                   **dict(config.headers)}
        if config.username:  # aiohttp drops it on a redirect to another origin
            headers["Authorization"] = basic_auth(config.username, config.password)
        self._session = aiohttp_session(
            connect_timeout=config.connect_timeout, read_timeout=config.read_timeout,
            total_timeout=config.total_timeout, tls=context,
            limit=config.download_concurrency, headers=headers, read_bufsize=CHUNK)
        self._cancel.enter_context(cancels_this_task())  # in a task: its cancel stops us
        return self

    async def __aexit__(self, *exc_info) -> None:
        self._cancel.close()
        if self._session is not None:
            await self._session.close()
        self._small_files.close()
        self._pool.shutdown(wait=True)

    # -- public -------------------------------------------------------------------------------

    async def fetch_index(self, url: str,
                          progress: Callable[[int, int | None], None] | None = None) -> Path:
        """The index at `url` in a temporary file under the store's tmp directory, at most
        `max_index_size` bytes. The caller deletes the file."""
        limit = self.settings.max_index_size

        async def attempt() -> Path:
            fd, name = tempfile.mkstemp(dir=temporary_dir(self.storage), prefix="index-")
            try:
                with os.fdopen(fd, "wb") as out:
                    async with contextlib.aclosing(self._chunks(url, limit=limit)) as chunks:
                        size = 0
                        async for chunk, total in chunks:
                            size += len(chunk)
                            if size > limit:
                                raise _too_large(url, f"more than {limit} bytes")
                            out.write(chunk)
                            if progress:
                                progress(size, total)
                return Path(name)
            except BaseException:
                os.unlink(name)
                raise

        return await self._retrying(url, attempt)

    async def download(self, file: RemoteFile) -> tuple[str, int]:
        """Fetch one file into the store, verified against its sha256 (or, when it has none,
        its announced `checksum`) and size when known. Returns (sha256, size). Call
        `storage.flush()` before recording it: small files are made durable in batches."""
        if file.sha256 and file.size is not None and file.size <= SMALL_FILE:
            return await self._retrying(file.url, lambda: self._download_small(file))

        async def attempt() -> tuple[str, int]:
            with self.storage.writer() as writer:
                async with contextlib.aclosing(self._body(file)) as body, \
                        contextlib.aclosing(self._verified(file, body, writer)) as verified:
                    async for _ in verified:
                        pass  # _verified writes and, once the bytes check out, commits
                return writer.sha256.hexdigest(), writer.size

        return await self._retrying(file.url, attempt)

    async def _download_small(self, file: RemoteFile) -> tuple[str, int]:
        """A small file is read into memory, then hashed, written and committed by the
        small-file thread, in groups: the event loop only moves bytes, which matters for
        many small files. Not yet durable: the caller flushes the storage before it records
        them (the sync does, once per batch)."""
        data = await self._small_body(file)
        try:
            return file.sha256.lower(), await self._small_files.store(data, file.sha256)
        except DigestMismatch as exc:
            _check_digest(file, exc.details["actual"])  # the same error, naming the URL
            raise

    async def _small_body(self, file: RemoteFile) -> bytes:
        if urlsplit(file.url).scheme.lower() == "file":
            async with contextlib.aclosing(self._body(file)) as body:
                return await _collect(body, file)
        response = await self._get(file.url, file.size)
        try:
            if response.content_length is not None:  # checked: equal to file.size
                data = await response.read()
            else:
                data = await _collect(response.content.iter_chunked(CHUNK), file)
        except BaseException:
            response.close()
            raise
        response.release()
        if len(data) != file.size:
            raise _size_mismatch(file, f"{len(data)} bytes, not the {file.size} announced")
        return data

    async def stream(self, file: RemoteFile, *, store: bool) -> AsyncIterator[bytes]:
        """The bytes of one remote file, as they arrive.

        The final chunk is held back until the whole body has been hashed: on a digest or
        size mismatch DigestMismatch is raised instead of yielding it, so a consumer never
        passes on a complete bad file. With `store=True` the bytes are also written into the
        artifact store and committed (verified) before the final chunk is yielded; the
        artifact is then stored under `file.sha256`, and recording its row is the caller's
        business. Failures before the first chunk are retried like downloads; later ones
        raise DownloadError. Close the iterator (`aclose`) to stop early."""
        body = await self._retrying(file.url, lambda: self._opened(file))
        writer = self.storage.writer() if store else None
        try:
            async with contextlib.aclosing(self._verified(file, body, writer)) as verified:
                async for chunk in verified:
                    yield chunk
        except aiohttp.ClientError as exc:
            raise self._describe(file.url, exc)[0] from None
        except asyncio.TimeoutError as exc:
            raise self._describe(file.url, exc)[0] from None
        finally:
            await body.aclose()
            if writer is not None:
                writer.abort()  # no-op once committed

    # -- bodies ---------------------------------------------------------------------------------

    async def _opened(self, file: RemoteFile) -> AsyncIterator[bytes]:
        """The body iterator, its first chunk already read (so connecting and the status
        are inside the retried part)."""
        body = self._body(file)
        try:
            first = await anext(body, None)
        except BaseException:
            await body.aclose()
            raise

        async def rest() -> AsyncIterator[bytes]:
            try:
                if first is not None:
                    yield first
                async for chunk in body:
                    yield chunk
            finally:
                await body.aclose()
        return rest()

    async def _body(self, file: RemoteFile) -> AsyncIterator[bytes]:
        chunks = self._chunks(file.url, expected_size=file.size)
        async with contextlib.aclosing(chunks):
            async for chunk, _ in chunks:
                yield chunk

    async def _chunks(self, url: str, *, expected_size: int | None = None,
                      limit: int | None = None) -> AsyncIterator[tuple[bytes, int | None]]:
        """(chunk, announced length) pairs of a URL's body; length checks before reading."""
        if urlsplit(url).scheme.lower() == "file":
            local = self._local_chunks(url, expected_size, limit)
            async with contextlib.aclosing(local):
                async for item in local:
                    yield item
            return
        response = await self._get(url, expected_size, limit)
        try:
            async for chunk in response.content.iter_chunked(CHUNK):
                yield chunk, response.content_length
        except BaseException:
            response.close()  # drop the connection: the rest of the body is not wanted
            raise
        response.release()

    async def _get(self, url: str, expected_size: int | None = None,
                   limit: int | None = None) -> aiohttp.ClientResponse:
        """A GET whose status is 200 and whose announced length (if any) is acceptable;
        its body is still to be read."""
        scheme = urlsplit(url).scheme.lower()
        if scheme not in ("http", "https"):
            raise failure(url, f"the scheme {scheme!r} is not supported")
        # Proxy credentials go on the CONNECT for https, on the request itself for http.
        response = await self._session.get(
            url, proxy=self.config.proxy_url, max_redirects=MAX_REDIRECTS,
            proxy_headers=self._proxy_headers if scheme == "https" else None,
            headers=self._proxy_headers if scheme == "http" else None)
        try:
            if response.status >= 400:
                raise _BadStatus(response.status, response.reason)
            if response.status != 200:
                raise failure(url, f"the server answered {response.status} "
                              f"{response.reason or ''} instead of 200".rstrip(),
                              status=response.status)
            _check_length(url, response.content_length, expected_size, limit)
        except BaseException:
            response.close()
            raise
        return response

    async def _local_chunks(self, url: str, expected_size: int | None, limit: int | None
                            ) -> AsyncIterator[tuple[bytes, int | None]]:
        path = local_path(url, self.settings.allowed_import_dirs)  # again: links may change
        loop = asyncio.get_running_loop()
        try:
            source = await loop.run_in_executor(self._pool, open, path, "rb")
        except FileNotFoundError:
            raise failure(url, "there is no such file") from None
        except OSError as exc:
            raise failure(url, exc.strerror or str(exc)) from None
        try:
            length = os.fstat(source.fileno()).st_size
            _check_length(url, length, expected_size, limit)
            while chunk := await loop.run_in_executor(self._pool, source.read, CHUNK):
                yield chunk, length
        finally:
            source.close()

    async def _verified(self, file: RemoteFile, body: AsyncIterator[bytes],
                        writer: Writer | None) -> AsyncIterator[bytes]:
        """Pass `body` on, one chunk behind; hash (and write) it; verify the size and digest
        before the last chunk goes out; commit the writer, if any, before that too."""
        digest = writer.sha256 if writer is not None else hashlib.sha256()
        announced = hashlib.new(announced_algorithm(file.url, file.checksum)) \
            if not file.sha256 else None
        size, pending = 0, None
        async for chunk in body:
            size += len(chunk)
            if file.size is not None and size > file.size:
                raise _size_mismatch(file, f"more than the {file.size} bytes announced")
            if writer is not None:
                writer.write(chunk)
            else:
                digest.update(chunk)
            if announced is not None:
                announced.update(chunk)
            if pending is not None:
                yield pending
            pending = chunk
        if file.size is not None and size != file.size:
            raise _size_mismatch(file, f"{size} bytes, not the {file.size} announced")
        if announced is not None:
            _check_announced(file, announced)
        else:
            _check_digest(file, digest.hexdigest())
        if writer is not None:
            await asyncio.get_running_loop().run_in_executor(self._pool, writer.commit,
                                                             file.sha256 or None)
        if pending is not None:
            yield pending

    # -- retries ------------------------------------------------------------------------------

    async def _retrying(self, url: str, attempt: Callable[[], Awaitable[T]]) -> T:
        failures = 0
        while True:
            try:
                return await attempt()
            except PalletError:
                raise  # already a verdict: wrong bytes, refused size, bad path
            except (aiohttp.ClientError, asyncio.TimeoutError, _BadStatus) as exc:
                error, transient = self._describe(url, exc)
                if not transient or failures >= self.config.max_retries:
                    if failures:
                        error.details["attempts"] = failures + 1
                    raise error from None
            failures += 1
            delay = min(RETRY_CAP_SECONDS, RETRY_BASE_SECONDS * 2 ** (failures - 1))
            await asyncio.sleep(delay * random.uniform(0.75, 1.0))

    def _describe(self, url: str, exc: BaseException) -> tuple[DownloadError, bool]:
        """The error to report and whether trying again may help."""
        if isinstance(exc, _BadStatus):
            return failure(url, str(exc), status=exc.status), \
                exc.status >= 500 or exc.status == 429
        if isinstance(exc, aiohttp.TooManyRedirects):
            return failure(url, f"more than {MAX_REDIRECTS} redirects (a redirect loop?)"), False
        if isinstance(exc, aiohttp.ClientConnectorCertificateError):
            error = exc.certificate_error
            reason = getattr(error, "verify_message", None) or _ssl_reason(error)
            return failure(url, f"the server's TLS certificate is not trusted: {reason}"), False
        if isinstance(exc, aiohttp.ClientSSLError) or _tls_refused(exc):
            return failure(url, f"TLS failed: {exc}"), False
        if isinstance(exc, (aiohttp.ServerTimeoutError, asyncio.TimeoutError)):
            return failure(url, self._timeout_reason(exc)), True
        if isinstance(exc, aiohttp.ClientPayloadError):
            return failure(url, f"the body broke off: {exc}"), True
        if isinstance(exc, aiohttp.ClientConnectionError):
            return failure(url, f"the connection failed: {exc or type(exc).__name__}"), True
        return failure(url, str(exc) or type(exc).__name__), False

    def _timeout_reason(self, exc: BaseException) -> str:
        config = self.config
        text = str(exc).lower()
        if "connect" in text:
            return f"no connection within {config.connect_timeout:g} s (connect_timeout)"
        if "read" in text:
            return f"no data for {config.read_timeout:g} s (read_timeout)"
        if config.total_timeout:
            return f"not done within {config.total_timeout:g} s (total_timeout)"
        return "timed out"


def basic_auth(username: str, password: str | None) -> str:
    token = base64.b64encode(f"{username}:{password or ''}".encode("utf-8")).decode("ascii")
    return f"Basic {token}"


def _tls_refused(exc: BaseException) -> bool:
    """A TLS alert from the server (such as "certificate required"): trying again is futile."""
    cause = getattr(exc, "os_error", None) or exc.__cause__
    return isinstance(cause, ssl.SSLError)


def _check_length(url: str, length: int | None, expected: int | None,
                  limit: int | None) -> None:
    if length is None:
        return
    if limit is not None and length > limit:
        raise _too_large(url, f"{length} bytes announced")
    if expected is not None and length != expected:
        raise DigestMismatch(f"{url} is announced as {length} bytes, not the expected "
                             f"{expected}", details={"url": url, "expected_size": expected,
                                                    "announced_size": length})


async def _collect(chunks: AsyncIterator[bytes], file: RemoteFile) -> bytes:
    """A small body in memory, refused as soon as it grows past the announced size."""
    parts, size = [], 0
    async for chunk in chunks:
        size += len(chunk)
        if size > file.size:
            raise _size_mismatch(file, f"more than the {file.size} bytes announced")
        parts.append(chunk)
    return b"".join(parts)


def _check_digest(file: RemoteFile, actual: str) -> None:
    if actual != file.sha256.lower():
        raise DigestMismatch(f"{file.url} has sha256 {actual}, not the expected {file.sha256}",
                             details={"url": file.url, "expected": file.sha256,
                                      "actual": actual})


def _check_announced(file: RemoteFile, announced) -> None:
    """The bytes against the checksum a file without a sha256 is announced by."""
    expected = file.checksum.value.lower()
    if announced.hexdigest() != expected:
        raise DigestMismatch(f"{file.url} has {announced.name} {announced.hexdigest()}, not the "
                             f"expected {expected[:128]}",
                             details={"url": file.url, "expected": expected[:128],
                                      "actual": announced.hexdigest(),
                                      "algorithm": announced.name})


def announced_algorithm(url: str, checksum: Checksum | None) -> str:
    """The hashlib name of an announced checksum's algorithm, or Invalid naming the URL."""
    algorithm = ALGORITHMS.get((checksum.algorithm if checksum else "").lower())
    if algorithm is None:
        named = checksum.algorithm[:20] if checksum else "none"
        raise Invalid(f"{url} is announced with an unknown checksum type {named!r}",
                      details={"url": url})
    return algorithm


def _size_mismatch(file: RemoteFile, what: str) -> DigestMismatch:
    return DigestMismatch(f"{file.url} sent {what}",
                          details={"url": file.url, "expected_size": file.size})


def _too_large(url: str, what: str) -> DownloadError:
    return failure(url, f"the index is too large ({what}; max_index_size is the limit)")


def temporary_dir(storage: ArtifactStorage) -> str | None:
    """The folder for temporary files of this process, cleared at the next start if it dies."""
    tmp = getattr(storage, "tmp", None)
    return str(tmp) if tmp is not None else None
