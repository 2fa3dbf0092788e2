"""The FastAPI application: every router under /api/v1, the OpenAPI document and a docs page
whose assets are served by Pallet itself (it runs in networks without internet)."""

from __future__ import annotations

from fastapi import APIRouter, FastAPI
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles
from sqlalchemy import select
from swagger_ui_bundle import swagger_ui_path

import pallet
from pallet.api import errors, openapi
from pallet.api.deps import RuntimeDep
from pallet.api.schemas import Schema
from pallet.artifacts.api import router as artifacts_router
from pallet.auth.api import router as auth_router
from pallet.auth.passwords import VerifiedCache
from pallet.content.api import router as content_router
from pallet.distributions.api import router as distributions_router
from pallet.orphans.api import router as orphans_router
from pallet.publications.api import router as publications_router
from pallet.remotes.api import router as remotes_router
from pallet.db.migrate import current_revision, head_revision
from pallet.replication.api import router as replication_router
from pallet.repositories.api import router as repositories_router
from pallet.runtime import Runtime
from pallet.tasks.api import router as tasks_router
from pallet.tasks.models import Worker
from pallet.transfer.api import router as transfer_router
from pallet.uploads.api import router as uploads_router

API = "/api/v1"
CONTENT = "/pallet/content"


class StatusRead(Schema):
    version: str
    database: str
    schema_revision: str | None
    schema_current: bool
    workers: int
    content_types: list[str]
    repository_types: list[str]


def create_app(runtime: Runtime) -> FastAPI:
    app = FastAPI(title="Pallet", version=pallet.__version__, docs_url=None, redoc_url=None,
                  openapi_url=f"{API}/openapi.json",
                  description="Mirror, version, publish, serve and transfer software content.")
    app.state.runtime = runtime
    app.openapi = lambda: openapi.document(app)
    app.state.password_cache = VerifiedCache(runtime.settings.auth_cache_seconds)
    errors.install(app)
    app.add_middleware(BodyLimit, default=runtime.settings.max_request_size,
                       chunks=runtime.settings.max_upload_chunk_size)

    api = APIRouter(prefix=API)
    for router in (repositories_router, remotes_router, publications_router,
                   distributions_router, content_router, artifacts_router, uploads_router,
                   orphans_router, transfer_router, replication_router, tasks_router,
                   auth_router):
        api.include_router(router)
    for plugin in runtime.plugins.plugins.values():
        if plugin.routes is not None:  # type-specific operations, under the plugin's name
            api.include_router(plugin.routes(), prefix=f"/{plugin.name}", tags=[plugin.name])
    api.add_api_route("/status", status, methods=["GET"], response_model=StatusRead,
                      tags=["status"], summary="Status (no authentication needed)")
    app.include_router(api)

    app.mount(f"{API}/docs/assets", StaticFiles(directory=swagger_ui_path), name="docs-assets")

    @app.get(f"{API}/docs", include_in_schema=False)
    def docs() -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url=f"{API}/openapi.json", title="Pallet API",
            swagger_js_url=f"{API}/docs/assets/swagger-ui-bundle.js",
            swagger_css_url=f"{API}/docs/assets/swagger-ui.css",
            swagger_favicon_url=f"{API}/docs/assets/favicon-32x32.png")

    return app


def create_server_app(runtime: Runtime):
    """The REST API and the content app behind one address. Content requests go straight to
    the content app, a plain ASGI app: no FastAPI routing or middleware on that path."""
    from pallet.contentapp.app import ContentApp

    return Dispatcher(create_app(runtime), ContentApp(runtime))


class Dispatcher:
    """Routes /pallet/content/... to the content app, everything else to the API."""

    def __init__(self, api, content) -> None:
        self.api, self.content = api, content

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] == "http":
            path = scope["path"]
            if path.startswith(CONTENT) and (len(path) == len(CONTENT)
                                             or path[len(CONTENT)] == "/"):
                return await self.content(scope, receive, send)
        elif scope["type"] == "lifespan":
            async def receive_lifespan():
                message = await receive()
                if message["type"] == "lifespan.shutdown":
                    await self.content.aclose()
                return message
            return await self.api(scope, receive_lifespan, send)
        await self.api(scope, receive, send)


class BodyLimit:
    """Refuse request bodies above the limit before they are read into memory (FastAPI
    parses a body before it checks who is asking). Upload chunks have their own limit."""

    def __init__(self, app, *, default: int, chunks: int) -> None:
        self.app, self.default, self.chunks = app, default, chunks

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        if scope["method"] == "POST" and scope["path"].endswith("/import-stream"):
            return await self.app(scope, receive, send)  # an archive: read as it arrives
        is_chunk = scope["method"] == "PUT" and scope["path"].startswith(f"{API}/uploads/")
        limit = self.chunks if is_chunk else self.default
        declared = dict(scope["headers"]).get(b"content-length")
        refusal = errors.error_response(413, "too_large", "the request body is larger than "
                                        f"the limit of {limit} bytes")
        if declared is not None and (not declared.isdigit() or int(declared) > limit):
            return await refusal(scope, receive, send)
        seen, exceeded, answered = 0, False, False

        async def counted():  # a body streamed without a length: stop it at the limit
            nonlocal seen, exceeded
            if not exceeded:
                message = await receive()
                seen += len(message.get("body", b""))
                if seen <= limit:
                    return message
                exceeded = True
            return {"type": "http.disconnect"}

        async def unless_exceeded(message) -> None:
            nonlocal answered
            if not exceeded:
                answered = True
                await send(message)

        try:
            await self.app(scope, counted, unless_exceeded)
        except Exception:
            if not exceeded:
                raise
        if exceeded and not answered:
            await refusal(scope, receive, send)


def status(runtime: RuntimeDep) -> StatusRead:
    with runtime.db.read() as session:
        workers = len(session.scalars(select(Worker.name)).all())
    current = current_revision(runtime.db)
    return StatusRead(version=pallet.__version__, database=runtime.db.dialect,
                      schema_revision=current, schema_current=current == head_revision(runtime.db),
                      workers=workers, content_types=sorted(runtime.plugins.content_types),
                      repository_types=sorted(runtime.plugins.repository_types))
