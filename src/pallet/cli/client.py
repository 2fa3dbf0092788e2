"""The CLI's one owner of the HTTP session to a Pallet server.

Where the server is and who we are come, highest priority first, from the root command's
options (`pallet --url ... --username ... repository list`), the environment (`PALLET_URL`,
`PALLET_USERNAME`, `PALLET_PASSWORD`, `PALLET_TOKEN`) and a TOML file (`PALLET_CLI_CONFIG`,
default `~/.config/pallet/cli.toml`, keys `url`, `username`, `password`, `token`).

Every failure, from the server, the network or the settings, becomes a `ClientError`; the
root command group turns it into one line on stderr and exit code 1. A usage error (an
unknown option, a missing argument, a bad value) is one line too, with exit code 2.
"""

from __future__ import annotations

import contextlib
import getpass
import os
import sys
import tomllib
from contextvars import ContextVar
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Iterator, Mapping
from urllib.parse import quote, urlsplit

import httpx
import typer
from typer.core import TyperGroup

try:  # Typer 0.2x carries its own copy of Click
    from typer._click.exceptions import ClickException, NoArgsIsHelpError, UsageError
except ImportError:  # older Typer runs on Click itself
    from click.exceptions import ClickException, NoArgsIsHelpError, UsageError

import pallet
from pallet.cli.output import error_line, fail

DEFAULT_URL = "http://127.0.0.1:24817"
USAGE_ERROR = 2  # exit code of a command line that cannot be parsed, as docs/users.md says
KEYS = ("url", "username", "password", "token")
TIMEOUT = httpx.Timeout(60.0, connect=10.0)
ALL_PAGES_LIMIT = 1000  # the API's largest page

_command: ContextVar[typer.Context] = ContextVar("pallet_cli_command")

Limit = Annotated[int | None, typer.Option(min=1, max=ALL_PAGES_LIMIT,
                                           help="Show one page of at most this many items "
                                                "(default: every item).")]
Offset = Annotated[int | None, typer.Option(min=0, help="Skip this many items (one page).")]


class ClientError(Exception):
    """A request that did not succeed (with the server's error code and details if it
    answered), or a client setting that is not valid."""

    def __init__(self, message: str, *, status: int | None = None, code: str | None = None,
                 details: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.message, self.status, self.code = message, status, code
        self.details = details or {}


@dataclass(frozen=True)
class ClientConfig:
    url: str = DEFAULT_URL
    username: str | None = None
    password: str | None = None
    token: str | None = None


def config_file(environ: Mapping[str, str]) -> dict[str, str]:
    """The TOML file's values; a missing default file is no error, a named one is."""
    named = environ.get("PALLET_CLI_CONFIG")
    home = environ.get("XDG_CONFIG_HOME") or Path.home() / ".config"
    path = Path(named) if named else Path(home) / "pallet" / "cli.toml"
    if not path.is_file():
        if named:
            raise ClientError(f"PALLET_CLI_CONFIG names {path}, which is not a readable "
                              "file")
        return {}
    try:
        values = tomllib.loads(path.read_text())
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ClientError(f"cannot read the CLI configuration {path}: {exc}") from None
    unknown = sorted(set(values) - set(KEYS))
    if unknown:
        raise ClientError(f"the CLI configuration {path} has unknown keys: "
                          f"{', '.join(unknown)} (known: {', '.join(KEYS)})")
    return {key: str(value) for key, value in values.items()}


def load_config(options: Mapping[str, str | None], environ: Mapping[str, str] = os.environ
                ) -> ClientConfig:
    """Each key from the first source that sets it: options, environment, file. A token is
    used unless a user name or password comes from a source of higher priority."""
    sources = [{k: v for k, v in options.items() if v},
               {k: environ[f"PALLET_{k.upper()}"] for k in KEYS
                if environ.get(f"PALLET_{k.upper()}")},
               config_file(environ)]

    def pick(key: str) -> tuple[int, str | None]:
        return next(((rank, s[key]) for rank, s in enumerate(sources) if key in s),
                    (len(sources), None))

    (_, url), (token_rank, token) = pick("url"), pick("token")
    (user_rank, username), (password_rank, password) = pick("username"), pick("password")
    if token and token_rank <= min(user_rank, password_rank):
        username = password = None
    else:
        token = None
    return ClientConfig(url=(url or DEFAULT_URL).rstrip("/"), username=username,
                        password=password, token=token)


def path(*parts: object) -> str:
    """An API path from its parts, each quoted: path("repositories", name, "versions", 3)."""
    return "/".join(quote(str(part), safe="") for part in parts)


class Client:
    """Requests to one server with one session; answers are the decoded JSON bodies.

    `path` is relative to /api/v1 ("repositories/web"), or absolute on the server as the
    API's `href`s are ("/api/v1/tasks/7"), or a whole URL as the `next` links are."""

    def __init__(self, config: ClientConfig, *, timeout: httpx.Timeout = TIMEOUT,
                 transport: httpx.BaseTransport | None = None) -> None:
        self.config = config
        headers = {"User-Agent": f"pallet-cli/{pallet.__version__}"}
        auth = None
        if config.token:
            headers["Authorization"] = f"Bearer {config.token}"
        elif config.username:
            auth = httpx.BasicAuth(config.username, config.password or "")
        self._http = httpx.Client(headers=headers, auth=auth, timeout=timeout,
                                  transport=transport)

    def close(self) -> None:
        self._http.close()

    def url(self, path: str) -> str:
        if path.startswith(("http://", "https://")):
            parts = urlsplit(path)  # keep our own scheme and host (the server may be proxied)
            path = parts.path + (f"?{parts.query}" if parts.query else "")
        if path.startswith("/"):
            return f"{self.config.url}{path}"
        return f"{self.config.url}/api/v1/{path}"

    def request(self, method: str, path: str, **kwargs: Any) -> Any:
        try:
            response = self._http.request(method, self.url(path), **kwargs)
        except httpx.TimeoutException as exc:
            raise ClientError(f"the Pallet server at {self.config.url} did not answer in "
                              f"time ({type(exc).__name__})") from None
        except httpx.HTTPError as exc:
            raise ClientError(f"cannot reach the Pallet server at {self.config.url}: "
                              f"{exc or type(exc).__name__}") from None
        if response.is_success:
            return response.json() if response.content else None
        raise self._error(response)

    @contextlib.contextmanager
    def stream(self, method: str, path: str, **kwargs: Any) -> Iterator[httpx.Response]:
        """A response whose body is read as it arrives (`iter_bytes()`)."""
        try:
            with self._http.stream(method, self.url(path), **kwargs) as response:
                if not response.is_success:
                    response.read()
                    raise self._error(response)
                yield response
        except httpx.TimeoutException as exc:
            raise ClientError(f"the Pallet server at {self.config.url} did not answer in "
                              f"time ({type(exc).__name__})") from None
        except httpx.HTTPError as exc:
            raise ClientError(f"the transfer from the Pallet server at {self.config.url} "
                              f"failed: {exc or type(exc).__name__}") from None

    def _error(self, response: httpx.Response) -> ClientError:
        try:
            error = response.json()["error"]
            message, code, details = error["message"], error["code"], error.get("details")
        except (ValueError, KeyError, TypeError):
            message = f"the server at {self.config.url} answered {response.status_code} " \
                      f"{response.reason_phrase}"
            code, details = None, None
        if response.status_code == 401 and not (self.config.username or self.config.token):
            message += " (set PALLET_USERNAME and PALLET_PASSWORD, or PALLET_TOKEN)"
        return ClientError(message, status=response.status_code, code=code, details=details)

    def get(self, path: str, **params: Any) -> Any:
        # No `params` at all for a link that has its query already: httpx would drop it.
        return self.request("GET", path, params=_present(params) or None)

    def post(self, path: str, body: Any = None) -> Any:
        return self.request("POST", path, json=body if body is not None else {})

    def patch(self, path: str, body: Any) -> Any:
        return self.request("PATCH", path, json=body)

    def delete(self, path: str) -> Any:
        return self.request("DELETE", path)

    def page(self, path: str, *, limit: int | None = None, offset: int | None = None,
             **params: Any) -> dict[str, Any]:
        """One page when `limit` or `offset` is given; else every item, following `next`."""
        if limit is not None or offset is not None:
            return self.get(path, limit=limit or 100, offset=offset or 0, **params)
        body = self.get(path, limit=ALL_PAGES_LIMIT, **params)
        results = list(body["results"])
        while body["next"]:
            body = self.get(body["next"])
            results.extend(body["results"])
        return {"count": body["count"], "next": None, "previous": None, "results": results}


def _present(params: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in params.items() if value is not None}


class ClientGroup(TyperGroup):
    """The root command group: it makes the running command's context known to `connect`,
    and a failed request or a usage error ends any command with one clear line."""

    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode=True,
             **extra: Any) -> Any:
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, False, **extra)
        try:
            # Not standalone: Typer would print usage errors as a box of several lines.
            code = super().main(args, prog_name, complete_var, False, **extra)
        except NoArgsIsHelpError as exc:  # `pallet repository`: its help, as asked
            exc.show()
            code = USAGE_ERROR
        except UsageError as exc:
            hint = f" (see '{exc.ctx.command_path} --help')" if exc.ctx else ""
            error_line(exc.format_message().rstrip(".") + hint)
            code = USAGE_ERROR
        except ClickException as exc:  # e.g. a file option that cannot be opened
            error_line(exc.format_message())
            code = exc.exit_code
        except typer.Abort:
            error_line("aborted")
            code = 1
        sys.exit(code if isinstance(code, int) else 0)

    def invoke(self, ctx: typer.Context) -> Any:
        running = _command.set(ctx)
        try:
            return super().invoke(ctx)
        except ClientError as exc:
            fail(exc.message)
        finally:
            _command.reset(running)


def root_context() -> typer.Context:
    """The root command's context, while a command runs."""
    return _command.get()


def options(ctx: typer.Context,
            url: Annotated[str | None, typer.Option(
                help=f"Server URL (else PALLET_URL, the config file, or {DEFAULT_URL}).")] = None,
            username: Annotated[str | None, typer.Option(
                help="User name for basic authentication (else PALLET_USERNAME).")] = None,
            password: Annotated[str | None, typer.Option(
                help="Password (else PALLET_PASSWORD; asked for if a user name has none).")
            ] = None,
            token: Annotated[str | None, typer.Option(
                help="API token, instead of a user name and password (else PALLET_TOKEN; "
                     "visible in the process list: prefer --token-stdin or --token-file).")
            ] = None,
            token_stdin: Annotated[bool, typer.Option(
                "--token-stdin", help="Read the API token from standard input.")] = False,
            token_file: Annotated[Path | None, typer.Option(
                metavar="FILE", dir_okay=False, help="Read the API token from this file.")
            ] = None) -> None:
    """Pallet: mirror, version, publish, serve and transfer software content.

    Client commands talk to a Pallet server over its REST API; the options below say where
    it is and who you are. The config file is PALLET_CLI_CONFIG (default
    ~/.config/pallet/cli.toml) with keys url, username, password, token."""
    from pallet.cli.secrets import check_one_source  # here: secrets imports this module

    check_one_source("--token", token, token_stdin, token_file)
    # The token is read when the first request needs it (`connect`), not before --help.
    ctx.obj = {"url": url, "username": username, "password": password, "token": token,
               "token_stdin": token_stdin, "token_file": token_file}


def connect() -> Client:
    """The client of the running command, made once from the root command's options."""
    root = _command.get()
    if "client" not in root.meta:
        root.meta["client"] = Client(_login(dict(root.obj or {})))
        root.call_on_close(root.meta["client"].close)
    return root.meta["client"]


def _login(given: dict[str, Any]) -> ClientConfig:
    """The configuration from the root options, a token read from where they say, and a
    password asked for at a terminal when a user name has none."""
    from pallet.cli.secrets import secret  # here: secrets needs this module's root_context

    stdin, file = given.pop("token_stdin", False), given.pop("token_file", None)
    given["token"] = secret("--token", given.get("token"), stdin=stdin, file=file)
    config = load_config(given)
    if config.username and config.password is None:
        if not sys.stdin.isatty():
            raise ClientError(f"no password given for {config.username}, and no terminal to "
                              "ask at: set PALLET_PASSWORD, --password or the config file's "
                              "password, or use a token (PALLET_TOKEN, --token-stdin, "
                              "--token-file)")
        config = ClientConfig(config.url, config.username,
                              getpass.getpass(f"Password of {config.username}: "))
    return config
