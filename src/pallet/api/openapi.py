"""The OpenAPI document, true to what the API answers: each operation lists the errors it
can return, in the one error shape. FastAPI's own 422, which Pallet never sends (a request
that does not validate is a 400), is left out.

The errors are derived from each operation as FastAPI documents it (its parameters, body,
method and security, where the role is the permission it needs), so a new route is
documented without anyone remembering to."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI

from pallet.api.schemas import ErrorBody

ERRORS = {
    400: "The request is not valid: the message says why; `details` names the field.",
    401: "Not authenticated: HTTP basic or `Authorization: Bearer TOKEN` is needed.",
    403: "Authenticated, without the permission this needs.",
    404: "Something the request names does not exist.",
    409: "The change conflicts with the current state (a name taken, something in use).",
    413: "The request body is larger than the server accepts.",
    503: "The database is busy or unreachable, or the disk is full; retry later.",
}
WRITES = {"post", "put", "patch", "delete"}
ERROR_REF = {"$ref": "#/components/schemas/ErrorBody"}


def errors_of(method: str, operation: dict[str, Any]) -> list[int]:
    """The error statuses an operation can answer."""
    body = "requestBody" in operation
    statuses = {503}  # every operation reads the database
    if body or operation.get("parameters"):
        statuses |= {400, 404}
    if body:
        statuses.add(413)
    if method in WRITES:
        statuses.add(409)
    security = operation.get("security")
    if security:
        statuses.add(401)
        roles = {role for requirement in security for roles in requirement.values()
                 for role in roles}
        if roles - {"read"}:  # every role may read
            statuses.add(403)
    return sorted(statuses)


def document(app: FastAPI) -> dict[str, Any]:
    """The document, built once."""
    if app.openapi_schema is None:
        schema = FastAPI.openapi(app)
        schemas = schema.setdefault("components", {}).setdefault("schemas", {})
        for name in ("HTTPValidationError", "ValidationError"):
            schemas.pop(name, None)
        error = ErrorBody.model_json_schema(ref_template="#/components/schemas/{model}")
        schemas.update(error.pop("$defs", {}), ErrorBody=error)
        for operations in schema["paths"].values():
            for method, operation in operations.items():
                responses = operation["responses"]
                responses.pop("422", None)
                for status in errors_of(method, operation):
                    responses.setdefault(str(status), {
                        "description": ERRORS[status],
                        "content": {"application/json": {"schema": ERROR_REF}}})
        _plain_tuples(schema)
        app.openapi_schema = schema
    return app.openapi_schema


def _plain_tuples(node: Any) -> None:
    """A tuple of one type (a byte range: two integers) as an array of that type with its
    length: the same values, in a form every tool reads (schemathesis 4 rejects
    `prefixItems`, which FastAPI writes for tuples)."""
    if isinstance(node, dict):
        items = node.get("prefixItems")
        if isinstance(items, list) and items and all(item == items[0] for item in items):
            node.pop("prefixItems")
            node["items"] = items[0]
        for value in node.values():
            _plain_tuples(value)
    elif isinstance(node, list):
        for value in node:
            _plain_tuples(value)


def methods_at(app: FastAPI, path: str) -> set[str]:
    """The methods the document lists at `path`, from the templates matching it with the
    most literal segments (`/tasks/purge` is that path, not `/tasks/{task_id}`)."""
    given = path.split("/")
    best, methods = -1, set()
    for template, operations in document(app)["paths"].items():
        parts = template.split("/")
        if len(parts) != len(given):
            continue
        literal = [part == segment for part, segment in zip(parts, given)]
        if not all(same or (part.startswith("{") and segment)
                   for same, part, segment in zip(literal, parts, given)):
            continue
        if sum(literal) > best:
            best, methods = sum(literal), set()
        if sum(literal) == best:
            methods |= {method.upper() for method in operations}
    return methods
