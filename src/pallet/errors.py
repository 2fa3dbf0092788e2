"""The errors Pallet reports to people. Each has a stable code, a sentence and details.

Services raise these; the API turns them into one JSON shape and the task runner stores them
as the task's error. Anything else is a bug: logged with its traceback, reported as `internal`.
"""

from __future__ import annotations

import errno
import sqlite3
from typing import Any


class PalletError(Exception):
    status = 400
    code = "invalid"

    def __init__(self, message: str, *, details: dict[str, Any] | None = None,
                 code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.details = details or {}
        if code:
            self.code = code

    def as_dict(self) -> dict[str, Any]:
        return {"code": self.code, "message": self.message, "details": self.details}


class Invalid(PalletError):
    status, code = 400, "invalid"


class Unauthorized(PalletError):
    status, code = 401, "unauthorized"


class Forbidden(PalletError):
    status, code = 403, "forbidden"


class NotFound(PalletError):
    status, code = 404, "not_found"


class Conflict(PalletError):
    status, code = 409, "conflict"


class TooLarge(PalletError):
    status, code = 413, "too_large"


class NoSpace(PalletError):
    """The disk (or the quota) the server writes to is full: not the caller's fault, and
    it may pass, hence 503."""

    status, code = 503, "no_space"


class Canceled(PalletError):
    """Raised inside a task when someone asked to cancel it."""

    status, code = 409, "canceled"


# Sentences for pydantic's error types whose own text is the library's, not a person's.
_PROBLEMS = {"missing": "is required", "extra_forbidden": "is not a field of this request"}
_PREFIXES = ("Value error, ", "Assertion failed, ")
_WHERE = {"body", "query", "path", "header", "cookie"}


def _problem(error: dict[str, Any]) -> dict[str, str]:
    loc = [str(p) for p in error.get("loc", ())]
    if loc and loc[0] in _WHERE:
        loc = loc[1:]
    kind, text = error.get("type", ""), str(error.get("msg", ""))
    if kind == "json_invalid":  # loc holds the character position, not a field
        reason = (error.get("ctx") or {}).get("error", "")
        return {"field": "body", "problem": f"is not valid JSON (at character "
                                            f"{loc[0] if loc else 0}: {reason})"}
    text = _PROBLEMS.get(kind) or text
    for prefix in _PREFIXES:
        text = text.removeprefix(prefix)
    return {"field": ".".join(loc), "problem": text}


def validation_problems(errors: list[dict[str, Any]]) -> tuple[str, list[dict[str, str]]]:
    """A sentence and a list of {field, problem} from pydantic's validation errors, in
    words for people: no pydantic type names, prefixes or links."""
    problems = [_problem(e) for e in errors]
    return "; ".join(f"{p['field'] or 'body'} {p['problem']}"
                     if p["problem"].startswith("is ") else
                     f"{p['field'] or 'body'}: {p['problem']}" for p in problems[:5]), problems


_FULL_ERRNOS = {errno.ENOSPC, errno.EDQUOT}
_POSTGRES_DISK_FULL = "53100"


def out_of_space(exc: BaseException) -> NoSpace | None:
    """NoSpace if `exc`, or an error it wraps, says a disk or quota is full: an OSError,
    SQLite's SQLITE_FULL, PostgreSQL's disk_full. Else None."""
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if (isinstance(exc, OSError) and exc.errno in _FULL_ERRNOS
                or isinstance(exc, sqlite3.Error)
                and getattr(exc, "sqlite_errorcode", None) == sqlite3.SQLITE_FULL
                or getattr(exc, "sqlstate", None) == _POSTGRES_DISK_FULL):
            return NoSpace("the server's disk is full: free space (pallet orphan cleanup, "
                           "or a larger disk), then retry")
        exc = getattr(exc, "orig", None) or exc.__cause__ or exc.__context__
    return None
