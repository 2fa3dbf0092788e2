"""Routes of replication. On a downstream: upstreams and their replication (the import
permission). On an upstream: downstreams and pushes, and what it offers its downstreams, the
catalogue and the change stream (the export permission)."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import StreamingResponse

from pallet.api.deps import Exporting, Importing, RuntimeDep, dispatch
from pallet.api.pagination import Paging, page
from pallet.api.schemas import Page
from pallet.replication import offer, service, tasks
from pallet.replication.schemas import (Catalogue, ChangeRequest, CatalogueRequest,
                                        DownstreamCreate, DownstreamRead, DownstreamUpdate,
                                        ReplicaRead, UpstreamCreate, UpstreamRead,
                                        UpstreamUpdate, downstream_read, upstream_read)
from pallet.tasks.schemas import TaskRead
from pallet.tasks.service import create_group
from pallet.transfer.streaming import stream_archive

router = APIRouter(tags=["replication"])
ACCEPTED = {202: {"model": TaskRead, "description": "Queued as a task."}}


# -- what this server offers its downstreams ------------------------------------------------

@router.post("/replication/catalogue", response_model=Catalogue)
def catalogue(body: CatalogueRequest, runtime: RuntimeDep, _: Exporting):
    """The repositories the names and patterns select, with their newest version and
    content digest."""
    with runtime.db.read() as session:
        return Catalogue(**offer.catalogue(session, body.repositories, body.distributions,
                                           body.names))


@router.post("/replication/stream", response_class=StreamingResponse,
             responses={200: {"content": {"application/x-tar": {}},
                              "description": "The change as one archive stream."}})
def change_stream(body: ChangeRequest, runtime: RuntimeDep, _: Exporting):
    """The change of each repository since the version (number and digest) the asking
    copy holds, or the whole repository, in the export format, written as it is read. With
    `fetch`, the files of on-demand units are fetched from their remotes first."""
    wanted = [w.model_dump() for w in body.repositories]
    return stream_archive(runtime, lambda session: offer.prepare_change(session, wanted),
                          fetch=(lambda session: offer.change_selections(session, wanted))
                          if body.fetch else None, filename="replication.tar")


# -- upstreams (this server replicates from them) -------------------------------------------

def _upstream_read(session, upstream) -> UpstreamRead:
    return upstream_read(upstream, [
        ReplicaRead(source=r.source, repository=name, version=r.version, digest=r.digest,
                    replicated_at=r.replicated_at)
        for r, name in service.replicas(session, upstream)])


@router.post("/upstreams", status_code=201, response_model=UpstreamRead)
def create_upstream(body: UpstreamCreate, runtime: RuntimeDep, _: Importing):
    with runtime.db.write() as session:
        return _upstream_read(session, service.create_upstream(session, **body.model_dump()))


@router.get("/upstreams", response_model=Page[UpstreamRead])
def list_upstreams(request: Request, runtime: RuntimeDep, _: Importing, paging: Paging):
    with runtime.db.read() as session:
        count, items = service.list_upstreams(session, limit=paging.limit, offset=paging.offset)
        return page(request, paging, count, items, lambda u: _upstream_read(session, u))


@router.get("/upstreams/{name}", response_model=UpstreamRead)
def show_upstream(name: str, runtime: RuntimeDep, _: Importing):
    with runtime.db.read() as session:
        return _upstream_read(session, service.get_upstream(session, name))


@router.patch("/upstreams/{name}", response_model=UpstreamRead)
def update_upstream(name: str, body: UpstreamUpdate, runtime: RuntimeDep, _: Importing):
    with runtime.db.write() as session:
        upstream = service.update_upstream(session, service.get_upstream(session, name),
                                           body.model_dump(exclude_unset=True))
        return _upstream_read(session, upstream)


@router.delete("/upstreams/{name}", status_code=204)
def delete_upstream(name: str, runtime: RuntimeDep, _: Importing) -> None:
    with runtime.db.write() as session:
        service.delete_upstream(session, service.get_upstream(session, name))


@router.post("/upstreams/{name}/replicate", status_code=202, response_model=TaskRead,
             responses=ACCEPTED)
def replicate(name: str, runtime: RuntimeDep, principal: Importing):
    """Bring the selected repositories and their distributions in step with the upstream."""
    with runtime.db.write() as session:
        upstream = service.get_upstream(session, name)
        group = create_group(session, f"replicate from upstream {name}")
        upstream_id, group_id = upstream.id, group.id
    exclusive, shared = service.pull_locks(upstream_id)
    return dispatch(runtime, principal, tasks.pull, exclusive=exclusive, shared=shared,
                    group_id=group_id, upstream_id=upstream_id)


# -- downstreams (this server pushes into them) ---------------------------------------------

@router.post("/downstreams", status_code=201, response_model=DownstreamRead)
def create_downstream(body: DownstreamCreate, runtime: RuntimeDep, _: Exporting):
    with runtime.db.write() as session:
        return downstream_read(service.create_downstream(session, **body.model_dump()))


@router.get("/downstreams", response_model=Page[DownstreamRead])
def list_downstreams(request: Request, runtime: RuntimeDep, _: Exporting, paging: Paging):
    with runtime.db.read() as session:
        count, items = service.list_downstreams(session, limit=paging.limit,
                                                offset=paging.offset)
        return page(request, paging, count, items, downstream_read)


@router.get("/downstreams/{name}", response_model=DownstreamRead)
def show_downstream(name: str, runtime: RuntimeDep, _: Exporting):
    with runtime.db.read() as session:
        return downstream_read(service.get_downstream(session, name))


@router.patch("/downstreams/{name}", response_model=DownstreamRead)
def update_downstream(name: str, body: DownstreamUpdate, runtime: RuntimeDep, _: Exporting):
    with runtime.db.write() as session:
        return downstream_read(service.update_downstream(
            session, service.get_downstream(session, name), body.model_dump(exclude_unset=True)))


@router.delete("/downstreams/{name}", status_code=204)
def delete_downstream(name: str, runtime: RuntimeDep, _: Exporting) -> None:
    with runtime.db.write() as session:
        service.delete_downstream(session, service.get_downstream(session, name))


@router.post("/downstreams/{name}/push", status_code=202, response_model=TaskRead,
             responses=ACCEPTED)
def push(name: str, runtime: RuntimeDep, principal: Exporting):
    """Stream the change of the selected repositories into the downstream's importer."""
    with runtime.db.write() as session:
        downstream = service.get_downstream(session, name)
        group = create_group(session, f"push into downstream {name}")
        downstream_id, group_id = downstream.id, group.id
    return dispatch(runtime, principal, tasks.push, exclusive=service.push_locks(downstream_id),
                    group_id=group_id, downstream_id=downstream_id)
