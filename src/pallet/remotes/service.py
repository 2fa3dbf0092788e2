"""Remotes: create, find, list, update, delete. Functions over an explicit session.

Every value is checked before anything is written: the URL (http, https, or file:// under
an allowed import directory, links resolved), the headers, that the TLS material loads, and
the sync options against the repository type's model.
"""

from __future__ import annotations

import re
import types
import typing
import unicodedata
from pathlib import Path
from typing import Any, Sequence
from urllib.parse import urlsplit

from pydantic import ValidationError
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from pallet.errors import Conflict, Invalid, NotFound, validation_problems
from pallet.plugin import RepositoryType, SyncOptions
from pallet.plugins import Registry
from pallet.remotes.downloader import local_path, tls_context
from pallet.remotes.models import POLICIES, Remote
from pallet.repositories.service import validate_name
from pallet.settings import Settings

# Fields a remote keeps; those that may never be null.
FIELDS = ("name", "type", "url", "policy", "mirror", "download_concurrency", "max_retries",
          "connect_timeout", "read_timeout", "total_timeout", "username", "password",
          "ca_cert", "client_cert", "client_key", "tls_validation", "proxy_url",
          "proxy_username", "proxy_password", "headers", "options")
REQUIRED = {"name", "type", "url", "policy", "mirror", "download_concurrency", "max_retries",
            "connect_timeout", "read_timeout", "tls_validation", "headers"}
DEFAULTS: dict[str, Any] = {
    "type": "file", "policy": "immediate", "mirror": False, "download_concurrency": 10,
    "max_retries": 3, "connect_timeout": 30.0, "read_timeout": 60.0, "total_timeout": None,
    "username": None, "password": None, "ca_cert": None, "client_cert": None,
    "client_key": None, "tls_validation": True, "proxy_url": None, "proxy_username": None,
    "proxy_password": None, "headers": {}, "options": {}}

HEADER_NAME = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]{1,256}$")
MAX_HEADER_VALUE = 8192
# Set by Pallet itself: letting a remote override them would break the transfer.
RESERVED_HEADERS = {"host", "content-length", "transfer-encoding", "connection", "keep-alive",
                    "upgrade", "te", "trailer", "proxy-connection", "accept-encoding"}


def lock_name(remote: Remote) -> str:
    """The task-lock resource of a remote: syncs share it, deleting takes it alone."""
    return f"remote:{remote.id}"


def create_remote(session: Session, plugins: Registry, settings: Settings, *, name: str,
                  url: str, **options: Any) -> Remote:
    unknown = set(options) - set(FIELDS)
    if unknown:
        raise Invalid(f"unknown remote fields: {', '.join(sorted(unknown))}")
    values = {**DEFAULTS, **options, "name": name, "url": url}
    _validate(plugins, settings, values)
    _check_free(session, name)
    remote = Remote(**values)
    session.add(remote)
    try:
        with session.begin_nested():
            session.flush()
    except IntegrityError:  # created by someone else between the check and here
        raise Conflict(f"a remote named {name!r} exists already", details={"name": name}) from None
    return remote


def get_remote(session: Session, name: str) -> Remote:
    remote = session.scalar(select(Remote).where(Remote.name == name))
    if remote is None:
        raise NotFound(f"there is no remote named {name!r}", details={"name": name})
    return remote


def list_remotes(session: Session, *, name: str | None = None,
                 name_contains: str | None = None, type: str | None = None,
                 limit: int = 100, offset: int = 0) -> tuple[int, list[Remote]]:
    query = select(Remote)
    if name is not None:
        query = query.where(Remote.name == name)
    if name_contains:
        query = query.where(Remote.name.contains(name_contains, autoescape=True))
    if type is not None:
        query = query.where(Remote.type == type)
    count = session.scalar(select(func.count()).select_from(query.subquery()))
    items = session.scalars(query.order_by(Remote.name).limit(limit).offset(offset)).all()
    return count, list(items)


def update_remote(session: Session, plugins: Registry, settings: Settings, remote: Remote,
                  **changes: Any) -> Remote:
    """Change the given fields; None clears an optional one (and restores the default
    sync options). All or nothing."""
    unknown = set(changes) - set(FIELDS)
    if unknown:
        raise Invalid(f"unknown remote fields: {', '.join(sorted(unknown))}")
    if "options" in changes and changes["options"] is None:
        changes = {**changes, "options": {}}
    if changes.get("type", remote.type) != remote.type:
        raise Invalid("a remote's type cannot change; create another remote",
                      details={"field": "type"})
    cleared = sorted(k for k, v in changes.items() if v is None and k in REQUIRED)
    if cleared:
        raise Invalid(f"{', '.join(cleared)} cannot be cleared", details={"field": cleared[0]})
    values = {field: getattr(remote, field) for field in FIELDS} | changes
    _validate(plugins, settings, values)
    if values["name"] != remote.name:
        _check_free(session, values["name"])
    for field, value in changes.items():
        setattr(remote, field, values[field])
    session.flush()
    return remote


def delete_remote(session: Session, remote: Remote) -> None:
    """Delete a remote. Repositories that named it as their remote no longer have one; files
    that only it offered on demand can no longer be fetched."""
    session.delete(remote)
    session.flush()


# -- validation -----------------------------------------------------------------------------

def sync_options(repository_type: RepositoryType, options: Any) -> SyncOptions:
    """`options` as the type's sync options model, or Invalid naming each wrong option. A
    text value given for a list option is read as comma-separated values (what the CLI's
    `--option skip_types=srpm` sends)."""
    model = repository_type.sync_options
    if not isinstance(options, dict):
        raise Invalid("options must be an object of sync option names and values",
                      details={"field": "options"})
    try:
        return model.model_validate({name: _listed(model, name, value)
                                     for name, value in options.items()})
    except ValidationError as exc:
        unknown = (f"is not a sync option of {repository_type.name} remotes (they take "
                   f"{', '.join(model.model_fields) or 'none'})")
        summary, problems = validation_problems([_option_error(error, unknown)
                                                 for error in exc.errors()])
        raise Invalid(f"invalid sync options: {summary}",
                      details={"field": "options", "errors": problems}) from None


def _option_error(error: dict[str, Any], unknown: str) -> dict[str, Any]:
    """pydantic's error located under `options`, with `unknown` as the sentence for an
    option the model does not have."""
    error = {**error, "loc": ("options", *error["loc"])}
    if error["type"] == "extra_forbidden":
        error.update(type="unknown_option", msg=unknown)
    return error


def fingerprint_options(options: SyncOptions) -> dict[str, Any]:
    """Sync options as a sync fingerprint compares them: those left at their default
    omitted, so {} and options equal to the defaults are the same."""
    return options.model_dump(mode="json", exclude_defaults=True)


def _listed(model: type[SyncOptions], name: str, value: Any) -> Any:
    field = model.model_fields.get(name)
    if not isinstance(value, str) or field is None or not _is_list(field.annotation):
        return value
    return [part.strip() for part in value.split(",") if part.strip()]


def _is_list(annotation: Any) -> bool:
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        return any(_is_list(arg) for arg in typing.get_args(annotation))
    return origin in (list, tuple, set, frozenset) or annotation in (list, tuple, set)


def check_url(url: str, allowed_dirs: Sequence[Path], *, field: str = "url",
              schemes: tuple[str, ...] = ("http", "https", "file")) -> str:
    """`url` if it is an http(s) URL with a host, or a file URL under an allowed directory."""
    def refuse(reason: str) -> Invalid:
        return Invalid(f"{field} {url[:200]!r} is not allowed: {reason}",
                       details={"field": field})

    if not url or any(c.isspace() or unicodedata.category(c) == "Cc" for c in url):
        raise refuse("it is empty or holds spaces or control characters")
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018  (raises on a port that is not a number in range)
    except ValueError as exc:
        raise refuse(str(exc)) from None
    scheme = parts.scheme.lower()
    if scheme not in schemes:
        raise refuse(f"use {', '.join(schemes)}")
    if scheme == "file":
        try:
            local_path(url, allowed_dirs)
        except Invalid as exc:
            raise Invalid(f"{field}: {exc.message}", details={"field": field}) from None
        return url
    if not parts.hostname:
        raise refuse("it has no host")
    if "@" in parts.netloc:
        raise refuse("credentials go in the username and password fields, which are "
                     "never shown, not in the URL")
    return url


def check_headers(headers: dict[str, str], *, basic_auth: bool, proxy_auth: bool) -> None:
    seen: set[str] = set()
    for name, value in headers.items():
        lower = name.lower()
        if not isinstance(name, str) or not HEADER_NAME.match(name):
            raise Invalid(f"header name {name[:80]!r} is not a valid HTTP header name",
                          details={"field": "headers"})
        if lower in seen:
            raise Invalid(f"header {name} is given twice", details={"field": "headers"})
        seen.add(lower)
        if lower in RESERVED_HEADERS:
            raise Invalid(f"header {name} is set by Pallet itself", details={"field": "headers"})
        if len(value) > MAX_HEADER_VALUE or any(
                unicodedata.category(c) == "Cc" and c != "\t" for c in value):
            raise Invalid(f"the value of header {name} is longer than {MAX_HEADER_VALUE} "
                          "characters or holds CR, LF or other control characters",
                          details={"field": "headers"})
        if lower == "authorization" and basic_auth or \
                lower == "proxy-authorization" and proxy_auth:
            raise Invalid(f"give a user name and password, or a {name} header, not both",
                          details={"field": "headers"})


def _validate(plugins: Registry, settings: Settings, values: dict[str, Any]) -> None:
    validate_name(values["name"], "remote")
    repository_type = plugins.repository_type(values["type"])
    if repository_type.read_remote is None:
        raise Invalid(f"{values['type']} repositories cannot sync from a remote",
                      details={"field": "type"})
    values["options"] = sync_options(repository_type, values["options"]).model_dump(
        mode="json", exclude_unset=True)
    check_url(values["url"], settings.allowed_import_dirs)
    if values["policy"] not in POLICIES:
        raise Invalid(f"policy must be one of {', '.join(POLICIES)}", details={"field": "policy"})
    for field in ("ca_cert", "client_cert", "client_key", "proxy_url"):
        if values[field] == "":
            values[field] = None  # empty text means none
    _check_credentials(values["username"], values["password"], "")
    _check_credentials(values["proxy_username"], values["proxy_password"], "proxy_")
    if values["proxy_url"] is not None:
        check_url(values["proxy_url"], (), field="proxy_url", schemes=("http", "https"))
    elif values["proxy_username"] is not None:
        raise Invalid("proxy_username needs a proxy_url", details={"field": "proxy_username"})
    check_headers(values["headers"], basic_auth=values["username"] is not None,
                  proxy_auth=values["proxy_username"] is not None)
    tls_context(ca_cert=values["ca_cert"], client_cert=values["client_cert"],
                client_key=values["client_key"], verify=values["tls_validation"])


def _check_credentials(username: str | None, password: str | None, prefix: str) -> None:
    if password is not None and username is None:
        raise Invalid(f"{prefix}password needs a {prefix}username",
                      details={"field": f"{prefix}password"})
    for field, value in ((f"{prefix}username", username), (f"{prefix}password", password)):
        if value is not None and any(unicodedata.category(c) == "Cc" for c in value):
            raise Invalid(f"{field} holds control characters", details={"field": field})
    if username is not None and (not username or ":" in username):
        raise Invalid(f"{prefix}username must be non-empty and hold no ':' (basic "
                      "authentication cannot carry it)", details={"field": f"{prefix}username"})


def _check_free(session: Session, name: str) -> None:
    if session.scalar(select(Remote.id).where(Remote.name == name)) is not None:
        raise Conflict(f"a remote named {name!r} exists already", details={"name": name})
