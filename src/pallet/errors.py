"""The errors Pallet reports to people. Each has a stable code, a sentence and details.

Services raise these; the API turns them into one JSON shape and the task runner stores them
as the task's error. Anything else is a bug: logged with its traceback, reported as `internal`.
"""

from __future__ import annotations

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


class Canceled(PalletError):
    """Raised inside a task when someone asked to cancel it."""

    status, code = 409, "canceled"


def validation_problems(errors: list[dict[str, Any]]) -> tuple[str, list[dict[str, str]]]:
    """A sentence and a list of {field, problem} from pydantic's validation errors."""
    problems = [{"field": ".".join(str(p) for p in e.get("loc", ()) if p != "body"),
                 "problem": e.get("msg", "")} for e in errors]
    return "; ".join(f"{p['field'] or 'body'}: {p['problem']}" for p in problems[:5]), problems
