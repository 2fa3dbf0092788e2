from __future__ import annotations

from fastapi import APIRouter, Request

from pallet.api.deps import Reader, RuntimeDep
from pallet.api.pagination import Paging, page
from pallet.api.schemas import Page
from pallet.artifacts import service
from pallet.artifacts.schemas import ArtifactRead, artifact_read

router = APIRouter(prefix="/artifacts", tags=["artifacts"])


@router.get("", response_model=Page[ArtifactRead])
def list_artifacts(request: Request, runtime: RuntimeDep, _: Reader, paging: Paging,
                   sha256: str | None = None):
    with runtime.db.read() as session:
        count, items = service.list_artifacts(session, sha256=sha256, limit=paging.limit,
                                              offset=paging.offset)
        return page(request, paging, count, items, artifact_read)


@router.get("/{artifact_id}", response_model=ArtifactRead)
def show_artifact(artifact_id: int, runtime: RuntimeDep, _: Reader):
    with runtime.db.read() as session:
        return artifact_read(service.get_artifact(session, artifact_id))
