"""`pallet remote ...`: create, list, show, update and delete remotes.

Secrets (password, proxy password, client key) are sent to the server and never printed:
the server shows only whether they are set. Certificates and keys are read from files.
Sync options (`--option NAME=VALUE`) are the repository type's; the server checks them.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from pallet.cli.client import Limit, Offset, connect, path
from pallet.cli.output import JsonFlag, fail, say, show_page, show_record
from pallet.cli.secrets import secret
from pallet.cli.task import NoWait, report

app = typer.Typer(help="Remotes: where repositories sync from, and how to reach them.",
                  no_args_is_help=True)

Name = Annotated[str, typer.Argument(help="The remote's name.")]

COLUMNS = ["name", "type", "url", "policy", "mirror", "updated_at"]
FIELDS = ["name", "type", "url", "policy", "mirror", "download_concurrency", "max_retries",
          "connect_timeout", "read_timeout", "total_timeout", "username", "password_set",
          ("ca_cert", lambda r: pem_summary(r["ca_cert"])),
          ("client_cert", lambda r: pem_summary(r["client_cert"])), "client_key_set",
          "tls_validation", "proxy_url", "proxy_username", "proxy_password_set", "headers",
          ("options", lambda r: options_summary(r.get("options"))),
          "href", "created_at", "updated_at"]
# What `update --clear` can clear, as option-style names.
CLEARABLE = {"total-timeout": "total_timeout", "username": "username", "password": "password",
             "ca-cert": "ca_cert", "client-cert": "client_cert", "client-key": "client_key",
             "proxy-url": "proxy_url", "proxy-username": "proxy_username",
             "proxy-password": "proxy_password", "headers": "headers", "options": "options"}


def pem_summary(pem: str | None) -> str | None:
    if not pem:
        return None
    count = pem.count("-----BEGIN CERTIFICATE-----")
    return f"{count} PEM certificate{'s' if count != 1 else ''}"


def parse_headers(values: list[str] | None) -> dict[str, str] | None:
    """'Name: value' strings as a map (the server checks names and values)."""
    if not values:
        return None
    headers: dict[str, str] = {}
    for value in values:
        name, colon, text = value.partition(":")
        if not colon or not name.strip():
            fail(f"--header {value!r}: write it as 'Name: value'")
        headers[name.strip()] = text.strip()
    return headers


def parse_sync_options(values: list[str] | None) -> dict[str, object] | None:
    """NAME=VALUE strings as a map: VALUE as JSON when it parses (3, true, ["srpm"]), else
    as text (srpm; the server reads text given for a list option as comma-separated)."""
    if not values:
        return None
    options: dict[str, object] = {}
    for value in values:
        name, equals, text = value.partition("=")
        name = name.strip()
        if not equals or not name:
            fail(f"--option {value!r}: write it as NAME=VALUE")
        if name in options:
            fail(f"--option: {name!r} is given twice")
        try:
            options[name] = json.loads(text)
        except ValueError:
            options[name] = text
    return options


def options_summary(options: dict[str, object] | None) -> str:
    """Sync options as --option takes them: "retain_package_versions=3; skip_types=srpm"."""
    if not options:
        return "none"

    def text(value: object) -> str:
        if isinstance(value, list) and all(isinstance(v, str) for v in value):
            return ",".join(value)
        return value if isinstance(value, str) else json.dumps(value)

    return "; ".join(f"{name}={text(value)}" for name, value in sorted(options.items()))


def secret_value(value: str | None, from_stdin: bool, option: str) -> str | None:
    return secret(option, value, stdin=from_stdin)


def _options(*, url: str | None, policy: str | None, mirror: bool | None,
             download_concurrency: int | None, max_retries: int | None,
             connect_timeout: float | None, read_timeout: float | None,
             total_timeout: float | None, username: str | None, password: str | None,
             ca_cert: Path | None, client_cert: Path | None, client_key: Path | None,
             tls_validation: bool | None, proxy_url: str | None, proxy_username: str | None,
             proxy_password: str | None, header: list[str] | None,
             option: list[str] | None) -> dict[str, Any]:
    """The fields given on the command line, files read."""
    values: dict[str, Any] = dict(
        url=url, policy=policy, mirror=mirror, download_concurrency=download_concurrency,
        max_retries=max_retries, connect_timeout=connect_timeout, read_timeout=read_timeout,
        total_timeout=total_timeout, username=username, password=password,
        tls_validation=tls_validation, proxy_url=proxy_url, proxy_username=proxy_username,
        proxy_password=proxy_password, headers=parse_headers(header),
        options=parse_sync_options(option))
    for field, file in (("ca_cert", ca_cert), ("client_cert", client_cert),
                        ("client_key", client_key)):
        if file is not None:
            try:
                values[field] = file.read_text()
            except (OSError, UnicodeDecodeError) as exc:
                fail(f"cannot read {file}: {exc}")
    return {key: value for key, value in values.items() if value is not None}


URL_HELP = ("Where the upstream is (http, https, or file:// under an allowed import "
            "directory): for file, a PULP_MANIFEST's URL, or a folder's ending in '/'; for "
            "rpm, the yum repository's folder (the one holding repodata/).")
Url = Annotated[str | None, typer.Option(help=URL_HELP)]
Policy = Annotated[str | None, typer.Option(help="immediate (download at sync), on_demand "
                                                 "(fetch and store when first asked) or "
                                                 "streamed (fetch, never store).")]
Mirror = Annotated[bool | None, typer.Option("--mirror/--additive",
                                             help="Syncs make the repository equal to the "
                                                  "remote, or only add to it.")]
Concurrency = Annotated[int | None, typer.Option(min=1, max=64, help="Parallel downloads.")]
Retries = Annotated[int | None, typer.Option(min=0, max=20, help="Retries of a failed request "
                                             "(connection errors, timeouts, 429, 5xx).")]
ConnectTimeout = Annotated[float | None, typer.Option(help="Seconds to connect.")]
ReadTimeout = Annotated[float | None, typer.Option(help="Seconds without data that fail a "
                                                   "request.")]
TotalTimeout = Annotated[float | None, typer.Option(help="Seconds one request may take.")]
Username = Annotated[str | None, typer.Option(help="User name for basic authentication.")]
Password = Annotated[str | None, typer.Option(help="Password (visible to other local users "
                                              "in the process list: prefer "
                                              "--password-stdin).")]
PasswordStdin = Annotated[bool, typer.Option("--password-stdin",
                                             help="Read the password from standard input.")]
TlsValidation = Annotated[bool | None, typer.Option("--tls-validation/--no-tls-validation",
                                                    help="Verify the server's certificate.")]
ProxyUrl = Annotated[str | None, typer.Option(help="http(s) proxy URL.")]
ProxyUsername = Annotated[str | None, typer.Option(help="Proxy user name.")]
ProxyPassword = Annotated[str | None, typer.Option(help="Proxy password.")]
ProxyPasswordStdin = Annotated[bool, typer.Option(
    "--proxy-password-stdin", help="Read the proxy password from standard input.")]
Header = Annotated[list[str] | None, typer.Option(metavar="'NAME: VALUE'",
                                                  help="An extra request header; repeatable.")]
OPTION_HELP = ("A sync option of the repository type (rpm: skip_types=srpm, "
               "retain_package_versions=N); VALUE is read as JSON when it parses, else as "
               "text; a list option takes comma-separated values; repeatable.")
Option = Annotated[list[str] | None, typer.Option("--option", metavar="NAME=VALUE",
                                                  help=OPTION_HELP)]
CaCert = Annotated[Path | None, typer.Option(exists=True, dir_okay=False, metavar="FILE",
                                             help="PEM CA certificate(s) to trust instead of "
                                                  "the system's.")]
ClientCert = Annotated[Path | None, typer.Option(exists=True, dir_okay=False, metavar="FILE",
                                                 help="PEM client certificate.")]
ClientKey = Annotated[Path | None, typer.Option(exists=True, dir_okay=False, metavar="FILE",
                                                help="PEM client key (unencrypted).")]


@app.command("create")
def create(name: Name,
           url: Annotated[str, typer.Option(help=URL_HELP)],
           type: Annotated[str, typer.Option(help="The repository type it syncs (file or "
                                                  "rpm).")] = "file",
           policy: Policy = None, mirror: Mirror = None,
           download_concurrency: Concurrency = None, max_retries: Retries = None,
           connect_timeout: ConnectTimeout = None, read_timeout: ReadTimeout = None,
           total_timeout: TotalTimeout = None, username: Username = None,
           password: Password = None, password_stdin: PasswordStdin = False,
           ca_cert: CaCert = None, client_cert: ClientCert = None,
           client_key: ClientKey = None, tls_validation: TlsValidation = None,
           proxy_url: ProxyUrl = None, proxy_username: ProxyUsername = None,
           proxy_password: ProxyPassword = None,
           proxy_password_stdin: ProxyPasswordStdin = False,
           header: Header = None, option: Option = None, as_json: JsonFlag = False) -> None:
    """Create a remote."""
    body = {"name": name, "type": type, **_options(
        url=url, policy=policy, mirror=mirror, download_concurrency=download_concurrency,
        max_retries=max_retries, connect_timeout=connect_timeout, read_timeout=read_timeout,
        total_timeout=total_timeout, username=username,
        password=secret_value(password, password_stdin, "--password"), ca_cert=ca_cert,
        client_cert=client_cert, client_key=client_key, tls_validation=tls_validation,
        proxy_url=proxy_url, proxy_username=proxy_username,
        proxy_password=secret_value(proxy_password, proxy_password_stdin, "--proxy-password"),
        header=header, option=option)}
    show_record(connect().post("remotes", body), FIELDS, as_json=as_json)


@app.command("list")
def list_remotes(name_contains: Annotated[str | None, typer.Option(
                     help="Only remotes whose name contains this.")] = None,
                 type: Annotated[str | None, typer.Option(help="Only remotes of this type.")
                 ] = None,
                 limit: Limit = None, offset: Offset = None, as_json: JsonFlag = False) -> None:
    """List remotes."""
    body = connect().page("remotes", name_contains=name_contains, type=type, limit=limit,
                          offset=offset)
    show_page(body, COLUMNS, as_json=as_json, noun="remote")


@app.command("show")
def show(name: Name, as_json: JsonFlag = False) -> None:
    """Show a remote (secrets only as whether they are set)."""
    show_record(connect().get(path("remotes", name)), FIELDS, as_json=as_json)


@app.command("update")
def update(name: Name, url: Url = None, policy: Policy = None, mirror: Mirror = None,
           download_concurrency: Concurrency = None, max_retries: Retries = None,
           connect_timeout: ConnectTimeout = None, read_timeout: ReadTimeout = None,
           total_timeout: TotalTimeout = None, username: Username = None,
           password: Password = None, password_stdin: PasswordStdin = False,
           ca_cert: CaCert = None, client_cert: ClientCert = None,
           client_key: ClientKey = None, tls_validation: TlsValidation = None,
           proxy_url: ProxyUrl = None, proxy_username: ProxyUsername = None,
           proxy_password: ProxyPassword = None,
           proxy_password_stdin: ProxyPasswordStdin = False,
           header: Annotated[list[str] | None, typer.Option(
               metavar="'NAME: VALUE'", help="An extra request header; repeatable; the "
                                             "headers given replace all earlier ones.")
           ] = None,
           option: Annotated[list[str] | None, typer.Option(
               "--option", metavar="NAME=VALUE",
               help=OPTION_HELP + " The options given replace all earlier ones.")] = None,
           clear: Annotated[list[str] | None, typer.Option(
               metavar="FIELD", help=f"Clear a field: {', '.join(CLEARABLE)}; repeatable.")
           ] = None,
           new_name: Annotated[str | None, typer.Option(help="Rename the remote.")] = None,
           as_json: JsonFlag = False) -> None:
    """Change some of a remote's settings; the others stay."""
    changes = _options(
        url=url, policy=policy, mirror=mirror, download_concurrency=download_concurrency,
        max_retries=max_retries, connect_timeout=connect_timeout, read_timeout=read_timeout,
        total_timeout=total_timeout, username=username,
        password=secret_value(password, password_stdin, "--password"), ca_cert=ca_cert,
        client_cert=client_cert, client_key=client_key, tls_validation=tls_validation,
        proxy_url=proxy_url, proxy_username=proxy_username,
        proxy_password=secret_value(proxy_password, proxy_password_stdin, "--proxy-password"),
        header=header, option=option)
    for item in clear or []:
        field = CLEARABLE.get(item.replace("_", "-"))
        if field is None:
            fail(f"--clear {item}: not a field that can be cleared (one of "
                 f"{', '.join(CLEARABLE)})")
        if field in changes:
            fail(f"--clear {item} and a new value for it: give one")
        changes[field] = {} if field in ("headers", "options") else None
    if new_name is not None:
        changes["name"] = new_name
    if not changes:
        fail("nothing to change: give an option to set, or --clear FIELD")
    show_record(connect().patch(path("remotes", name), changes), FIELDS, as_json=as_json)


@app.command("delete")
def delete(name: Name, no_wait: NoWait = False, as_json: JsonFlag = False) -> None:
    """Delete a remote (once the syncs from it have finished). Repositories that used it as
    their remote keep their content but no longer have a remote."""
    api = connect()
    report(api, api.delete(path("remotes", name)), no_wait=no_wait, as_json=as_json,
           describe=lambda task: say(f"remote {name} deleted"))

