"""Dependencies of routes: the runtime, who is calling, and what they may do."""

from __future__ import annotations

import base64
import binascii
from typing import Annotated, Any, Callable

from fastapi import Depends, Request, Security
from fastapi.encoders import jsonable_encoder
from fastapi.responses import JSONResponse
from fastapi.security.http import HTTPBase

from pallet.auth.service import Principal, authenticate_basic, authenticate_token
from pallet.errors import Forbidden, Unauthorized
from pallet.runtime import Runtime
from pallet.tasks.schemas import task_read
from pallet.tasks.service import enqueue


def get_runtime(request: Request) -> Runtime:
    return request.app.state.runtime


RuntimeDep = Annotated[Runtime, Depends(get_runtime)]


class _Scheme(HTTPBase):
    """An HTTP authentication scheme, named for the OpenAPI document (operations that need
    a login list it, with the permission as the role). `authenticate` reads the header."""

    async def __call__(self, request: Request) -> None:
        return None


_BASIC = _Scheme(scheme="basic", scheme_name="basic", auto_error=False)
_BEARER = _Scheme(scheme="bearer", scheme_name="bearer", auto_error=False)


def authenticate(request: Request, runtime: RuntimeDep,
                 _basic: Annotated[None, Security(_BASIC)] = None,
                 _bearer: Annotated[None, Security(_BEARER)] = None) -> Principal:
    header = request.headers.get("authorization", "")
    scheme, _, value = header.partition(" ")
    with runtime.db.read() as session:
        if scheme.lower() == "basic":
            try:
                username, _, password = base64.b64decode(value, validate=True).decode().partition(":")
            except (binascii.Error, UnicodeDecodeError):
                raise Unauthorized("the basic authorization header is malformed") from None
            return authenticate_basic(session, request.app.state.password_cache, username,
                                      password)
        if scheme.lower() == "bearer" and value:
            return authenticate_token(session, value.strip())
    raise Unauthorized("authentication required: use HTTP basic or 'Authorization: Bearer TOKEN'")


def require(permission: str) -> Callable[..., Principal]:
    # A default, not an annotation: annotations are strings here, and this one would name
    # a local variable.
    def check(principal: Principal = Security(authenticate, scopes=[permission])
              ) -> Principal:
        if permission not in principal.permissions:
            raise Forbidden(f"user {principal.username!r} may not do this (needs the "
                            f"{permission!r} permission)", details={"needs": permission})
        return principal
    return check


Reader = Annotated[Principal, Depends(require("read"))]
Writer = Annotated[Principal, Depends(require("write"))]
Admin = Annotated[Principal, Depends(require("admin"))]
Exporting = Annotated[Principal, Depends(require("export"))]
Importing = Annotated[Principal, Depends(require("import"))]


def dispatch(runtime: Runtime, principal: Principal, fn: Callable, *,
             exclusive: list[str] | tuple = (), shared: list[str] | tuple = (),
             group_id: int | None = None, **kwargs: Any) -> JSONResponse:
    """Queue a task and answer 202 with it."""
    with runtime.db.write() as session:
        task = enqueue(session, fn, exclusive=exclusive, shared=shared, group_id=group_id,
                       created_by=principal.username, **kwargs)
        body = task_read(task)
    runtime.wakeup.set()
    return JSONResponse(status_code=202, content=jsonable_encoder(body),
                        headers={"Location": body.href})
