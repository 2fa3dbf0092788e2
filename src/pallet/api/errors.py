"""One error shape everywhere: {"error": {"code", "message", "details"}}."""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import DataError, IntegrityError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from starlette.exceptions import HTTPException

from pallet.api import openapi
from pallet.errors import PalletError, out_of_space, validation_problems

log = logging.getLogger(__name__)

_UNAVAILABLE = ("locked", "busy", "unable to open", "connect", "closed", "timeout",
                "terminat", "shutting down", "too many")


def database_unavailable(exc: Exception) -> bool:
    """Whether a database error means "busy or unreachable, retry" (not a bug)."""
    if isinstance(exc, PoolTimeout) or getattr(exc, "connection_invalidated", False):
        return True
    text = str(getattr(exc, "orig", None) or exc).lower()
    return any(word in text for word in _UNAVAILABLE)


HTTP_CODES = {400: "invalid", 401: "unauthorized", 403: "forbidden", 404: "not_found",
              405: "method_not_allowed", 409: "conflict", 413: "too_large"}


def error_response(status: int, code: str, message: str, details: dict | None = None,
                   headers: dict | None = None) -> JSONResponse:
    return JSONResponse(status_code=status, headers=headers,
                        content={"error": {"code": code, "message": message,
                                           "details": details or {}}})


def install(app: FastAPI) -> None:
    @app.exception_handler(PalletError)
    async def pallet_error(request: Request, exc: PalletError) -> JSONResponse:
        headers = {"WWW-Authenticate": 'Basic realm="pallet"'} if exc.status == 401 else None
        return error_response(exc.status, exc.code, exc.message, exc.details, headers)

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, exc: RequestValidationError) -> JSONResponse:
        summary, problems = validation_problems(exc.errors())
        return error_response(400, "invalid", f"the request is not valid: {summary}",
                              {"errors": problems})

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException) -> JSONResponse:
        code = HTTP_CODES.get(exc.status_code, "error")
        message = exc.detail if isinstance(exc.detail, str) else code
        headers = dict(exc.headers or {})
        if exc.status_code == 404:
            message = f"there is nothing at {request.url.path}"
        if exc.status_code == 405:  # Starlette names one route's methods; a path has more
            allowed = sorted(openapi.methods_at(request.app, request.url.path)) or [
                m.strip() for m in headers.get("Allow", "").split(",") if m.strip()]
            headers["Allow"] = ", ".join(allowed)
            message = f"{request.url.path} answers {', '.join(allowed)}, not {request.method}"
        return error_response(exc.status_code, code, message, headers=headers or None)

    @app.exception_handler(IntegrityError)
    async def integrity(request: Request, exc: IntegrityError) -> JSONResponse:
        log.info("integrity error on %s: %s", request.url.path, exc.orig)
        return error_response(409, "conflict", "the change conflicts with the current state; "
                              "read it again and retry")

    @app.exception_handler(OverflowError)
    @app.exception_handler(DataError)
    async def out_of_range(request: Request, exc: Exception) -> JSONResponse:
        return error_response(400, "invalid", "a number or value in the request is out of "
                              "range")

    @app.exception_handler(PoolTimeout)
    @app.exception_handler(OperationalError)
    async def unavailable(request: Request, exc: Exception) -> JSONResponse:
        if out_of_space(exc) or not database_unavailable(exc):  # SQLite reports a bad statement this way too
            return await internal(request, exc)
        log.exception("database error on %s", request.url.path)
        return error_response(503, "unavailable", "the database is busy or unreachable; "
                              "retry shortly")

    @app.exception_handler(Exception)
    async def internal(request: Request, exc: Exception) -> JSONResponse:
        if full := out_of_space(exc):  # wherever it happened: a file, SQLite, PostgreSQL
            log.error("%s %s: %s (%s)", request.method, request.url.path, full.message, exc)
            return await pallet_error(request, full)
        log.exception("unexpected error on %s %s", request.method, request.url.path)
        return error_response(500, "internal", "an unexpected error occurred; the server log "
                              "has the details")
