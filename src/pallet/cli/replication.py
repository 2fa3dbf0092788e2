"""`pallet upstream|downstream ...`: connected inter-server sync.

On the downstream: `pallet upstream create` (where the upstream is, how to log in, what to
replicate), then `pallet upstream replicate` (or `--every SECONDS` for a schedule). Where only
the upstream may open connections, on the upstream: `pallet downstream create` naming the
downstream's importer, then `pallet downstream push`. Secrets are never printed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from pallet.cli.client import Limit, Offset, connect, path
from pallet.cli.orphan import size_text
from pallet.cli.output import JsonFlag, deleted, say, show_page, show_record
from pallet.cli.remote import (CaCert, ClientCert, ClientKey, Password, PasswordStdin,
                               TlsValidation, Username, pem_summary, secret_value)
from pallet.cli.secrets import TokenFile, TokenStdin, secret
from pallet.cli.task import NoWait, describes, report

upstream_app = typer.Typer(help="Upstreams: Pallets this server replicates from.",
                           no_args_is_help=True)
downstream_app = typer.Typer(help="Downstreams: Pallets this server pushes into.",
                             no_args_is_help=True)

Name = Annotated[str, typer.Argument(help="Its name.")]
Url = Annotated[Optional[str], typer.Option(help="The other Pallet's address, "
                                                 "http(s)://host:port.")]
Token = Annotated[Optional[str], typer.Option(help="An API token of the other Pallet "
                                                   "(instead of user and password).")]
Repository = Annotated[Optional[list[str]], typer.Option(
    "--repository", metavar="NAME|PATTERN", help="An upstream repository to replicate, or a "
                                                 "pattern such as 'web-*'; repeatable.")]
Distribution = Annotated[Optional[list[str]], typer.Option(
    "--distribution", metavar="NAME|PATTERN", help="Replicate the repository an upstream "
                                                   "distribution serves; repeatable.")]
Every = Annotated[Optional[int], typer.Option(min=5, metavar="SECONDS",
                                              help="Replicate on a schedule, every SECONDS.")]
ConnectTimeout = Annotated[Optional[float], typer.Option(
    metavar="SECONDS", help="Seconds to connect before a request fails (default 15).")]
ReadTimeout = Annotated[Optional[float], typer.Option(
    metavar="SECONDS", help="Seconds without a byte either way before a request fails "
                            "(default 120); a push also waits this long for the "
                            "downstream's last import step.")]
NoSchedule = Annotated[bool, typer.Option("--no-schedule", help="Stop the schedule.")]
Prefix = Annotated[Optional[str], typer.Option(help="Serve the upstream's base paths under "
                                                    "this prefix here.")]
RemoveMissing = Annotated[Optional[bool], typer.Option(
    "--remove-missing/--keep-missing", help="Delete local replicas of repositories the "
                                            "upstream no longer has (default: keep them and "
                                            "report them).")]

PEER_FIELDS = ["name", "base_url", "username", "has_password", "has_token",
               ("ca_cert", lambda r: pem_summary(r["ca_cert"])),
               ("client_cert", lambda r: pem_summary(r["client_cert"])), "has_client_key",
               "tls_validation", "connect_timeout", "read_timeout",
               ("repositories", lambda r: ", ".join(r["repositories"])),
               ("distributions", lambda r: ", ".join(r["distributions"])), "every_seconds"]
UPSTREAM_FIELDS = [*PEER_FIELDS, "base_path_prefix", "remove_missing",
                   ("replicas", lambda r: ", ".join(f"{x['repository']} (upstream version "
                                                    f"{x['version']})" for x in r["replicas"])),
                   "href", "created_at", "updated_at"]
DOWNSTREAM_FIELDS = [*PEER_FIELDS, "importer", "href", "created_at", "updated_at"]
COLUMNS = ["name", "base_url", "every_seconds", "updated_at"]


def _fields(*, url, username, password, token, ca_cert: Path | None,
            client_cert: Path | None, client_key: Path | None, tls_validation,
            connect_timeout, read_timeout, repository, distribution, every,
            token_stdin: bool = False, token_file: Path | None = None,
            **more: Any) -> dict[str, Any]:
    token = secret("--token", token, stdin=token_stdin, file=token_file)
    values: dict[str, Any] = dict(base_url=url, username=username, password=password,
                                  token=token, tls_validation=tls_validation,
                                  connect_timeout=connect_timeout, read_timeout=read_timeout,
                                  repositories=repository or None,
                                  distributions=distribution or None, every_seconds=every,
                                  **more)
    for field, file in (("ca_cert", ca_cert), ("client_cert", client_cert),
                        ("client_key", client_key)):
        if file is not None:
            values[field] = file.read_text()
    return {key: value for key, value in values.items() if value is not None}


# -- upstreams ----------------------------------------------------------------------------

@upstream_app.command("create")
def create_upstream(name: Name,
                    url: Annotated[str, typer.Option(help="The upstream Pallet's address.")],
                    repository: Repository = None, distribution: Distribution = None,
                    username: Username = None, password: Password = None,
                    password_stdin: PasswordStdin = False, token: Token = None,
                    token_stdin: TokenStdin = False, token_file: TokenFile = None,
                    ca_cert: CaCert = None, client_cert: ClientCert = None,
                    client_key: ClientKey = None, tls_validation: TlsValidation = None,
                    connect_timeout: ConnectTimeout = None, read_timeout: ReadTimeout = None,
                    base_path_prefix: Prefix = None, remove_missing: RemoveMissing = None,
                    every: Every = None, as_json: JsonFlag = False) -> None:
    """Register an upstream Pallet and what to replicate from it."""
    body = {"name": name, **_fields(
        url=url, username=username, password=secret_value(password, password_stdin, "--password"),
        token=token, token_stdin=token_stdin, token_file=token_file, ca_cert=ca_cert,
        client_cert=client_cert, client_key=client_key,
        tls_validation=tls_validation, connect_timeout=connect_timeout,
        read_timeout=read_timeout, repository=repository, distribution=distribution,
        every=every, base_path_prefix=base_path_prefix, remove_missing=remove_missing)}
    show_record(connect().post("upstreams", body), UPSTREAM_FIELDS, as_json=as_json)


@upstream_app.command("list")
def list_upstreams(limit: Limit = None, offset: Offset = None, as_json: JsonFlag = False):
    """List upstreams."""
    show_page(connect().page("upstreams", limit=limit, offset=offset), COLUMNS,
              as_json=as_json, noun="upstream")


@upstream_app.command("show")
def show_upstream(name: Name, as_json: JsonFlag = False) -> None:
    """Show an upstream and the replicas it keeps here."""
    show_record(connect().get(path("upstreams", name)), UPSTREAM_FIELDS, as_json=as_json)


@upstream_app.command("update")
def update_upstream(name: Name, url: Url = None, repository: Repository = None,
                    distribution: Distribution = None, username: Username = None,
                    password: Password = None, password_stdin: PasswordStdin = False,
                    token: Token = None, token_stdin: TokenStdin = False,
                    token_file: TokenFile = None, ca_cert: CaCert = None,
                    client_cert: ClientCert = None, client_key: ClientKey = None,
                    tls_validation: TlsValidation = None,
                    connect_timeout: ConnectTimeout = None, read_timeout: ReadTimeout = None,
                    base_path_prefix: Prefix = None,
                    remove_missing: RemoveMissing = None, every: Every = None,
                    no_schedule: NoSchedule = False, as_json: JsonFlag = False) -> None:
    """Change some of an upstream's settings (patterns given replace the earlier ones)."""
    changes = _fields(
        url=url, username=username, password=secret_value(password, password_stdin, "--password"),
        token=token, token_stdin=token_stdin, token_file=token_file, ca_cert=ca_cert,
        client_cert=client_cert, client_key=client_key,
        tls_validation=tls_validation, connect_timeout=connect_timeout,
        read_timeout=read_timeout, repository=repository, distribution=distribution,
        every=every, base_path_prefix=base_path_prefix, remove_missing=remove_missing)
    if no_schedule:
        changes["every_seconds"] = None
    show_record(connect().patch(path("upstreams", name), changes), UPSTREAM_FIELDS,
                as_json=as_json)


@upstream_app.command("delete")
def delete_upstream(name: Name, as_json: JsonFlag = False) -> None:
    """Delete an upstream; its replicas stay here as ordinary repositories."""
    href = path("upstreams", name)
    connect().delete(href)
    deleted(f"upstream {name}", f"/api/v1/{href}", as_json=as_json)


@describes("replication.pull")
def _describe_pull(task: dict[str, Any]) -> None:
    result = task["result"]
    for line in result["repositories"]:
        here = f" as {line['repository']}" if line["repository"] != line["name"] else ""
        say(f"{line['name']}{here}: {line['state']} (upstream version "
            f"{line['upstream_version']})")
    say(f"received {size_text(result['bytes_received'])}, stored "
        f"{size_text(result['bytes_written'])}")
    if result["missing_upstream"]:
        say("no longer upstream: " + ", ".join(result["missing_upstream"]))
    if result["no_longer_selected"]:
        say("no longer selected (kept): " + ", ".join(result["no_longer_selected"]))
    if result["removed"]:
        say("removed here: " + ", ".join(result["removed"]))


@upstream_app.command("replicate")
def replicate(name: Name, no_wait: NoWait = False, as_json: JsonFlag = False) -> None:
    """Bring the selected repositories and distributions in step with the upstream; only
    what changed travels. Distributions switch once every repository has synced."""
    api = connect()
    report(api, api.post(path("upstreams", name, "replicate")), no_wait=no_wait,
           as_json=as_json, describe=_describe_pull)


# -- downstreams ----------------------------------------------------------------------------

@downstream_app.command("create")
def create_downstream(name: Name,
                      url: Annotated[str, typer.Option(help="The downstream Pallet's "
                                                            "address.")],
                      importer: Annotated[str, typer.Option(
                          help="The downstream's importer that takes the streams.")],
                      repository: Repository = None, distribution: Distribution = None,
                      username: Username = None, password: Password = None,
                      password_stdin: PasswordStdin = False, token: Token = None,
                      token_stdin: TokenStdin = False, token_file: TokenFile = None,
                      ca_cert: CaCert = None, client_cert: ClientCert = None,
                      client_key: ClientKey = None, tls_validation: TlsValidation = None,
                      connect_timeout: ConnectTimeout = None, read_timeout: ReadTimeout = None,
                      every: Every = None, as_json: JsonFlag = False) -> None:
    """Register a downstream Pallet to push into (its importer maps and creates)."""
    body = {"name": name, **_fields(
        url=url, username=username, password=secret_value(password, password_stdin, "--password"),
        token=token, token_stdin=token_stdin, token_file=token_file, ca_cert=ca_cert,
        client_cert=client_cert, client_key=client_key,
        tls_validation=tls_validation, connect_timeout=connect_timeout,
        read_timeout=read_timeout, repository=repository, distribution=distribution,
        every=every, importer=importer)}
    show_record(connect().post("downstreams", body), DOWNSTREAM_FIELDS, as_json=as_json)


@downstream_app.command("list")
def list_downstreams(limit: Limit = None, offset: Offset = None, as_json: JsonFlag = False):
    """List downstreams."""
    show_page(connect().page("downstreams", limit=limit, offset=offset), COLUMNS,
              as_json=as_json, noun="downstream")


@downstream_app.command("show")
def show_downstream(name: Name, as_json: JsonFlag = False) -> None:
    """Show a downstream."""
    show_record(connect().get(path("downstreams", name)), DOWNSTREAM_FIELDS, as_json=as_json)


@downstream_app.command("update")
def update_downstream(name: Name, url: Url = None, importer: Annotated[Optional[str],
                      typer.Option(help="The downstream's importer.")] = None,
                      repository: Repository = None, distribution: Distribution = None,
                      username: Username = None, password: Password = None,
                      password_stdin: PasswordStdin = False, token: Token = None,
                      token_stdin: TokenStdin = False, token_file: TokenFile = None,
                      ca_cert: CaCert = None, client_cert: ClientCert = None,
                      client_key: ClientKey = None, tls_validation: TlsValidation = None,
                      connect_timeout: ConnectTimeout = None, read_timeout: ReadTimeout = None,
                      every: Every = None, no_schedule: NoSchedule = False,
                      as_json: JsonFlag = False) -> None:
    """Change some of a downstream's settings."""
    changes = _fields(
        url=url, username=username, password=secret_value(password, password_stdin, "--password"),
        token=token, token_stdin=token_stdin, token_file=token_file, ca_cert=ca_cert,
        client_cert=client_cert, client_key=client_key,
        tls_validation=tls_validation, connect_timeout=connect_timeout,
        read_timeout=read_timeout, repository=repository, distribution=distribution,
        every=every, importer=importer)
    if no_schedule:
        changes["every_seconds"] = None
    show_record(connect().patch(path("downstreams", name), changes), DOWNSTREAM_FIELDS,
                as_json=as_json)


@downstream_app.command("delete")
def delete_downstream(name: Name, as_json: JsonFlag = False) -> None:
    """Delete a downstream (nothing changes on it)."""
    href = path("downstreams", name)
    connect().delete(href)
    deleted(f"downstream {name}", f"/api/v1/{href}", as_json=as_json)


@describes("replication.push")
def _describe_push(task: dict[str, Any]) -> None:
    for line in task["result"]["repositories"]:
        say(f"{line['name']} -> {line['destination']}: {line['state']} (version "
            f"{line['version']})")
    if task["result"]["import_task"]:
        say(f"imported by the downstream's task {task['result']['import_task']}")


@downstream_app.command("push")
def push(name: Name, no_wait: NoWait = False, as_json: JsonFlag = False) -> None:
    """Stream the change of the selected repositories into the downstream's importer."""
    api = connect()
    report(api, api.post(path("downstreams", name, "push")), no_wait=no_wait,
           as_json=as_json, describe=_describe_push)
