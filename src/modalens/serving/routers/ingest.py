"""Bulk ingest in the background (writes, from folders the operator allowed) and its progress."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends
from pydantic import BaseModel, Field

from ...errors import NotFoundError
from ..dependencies import get_service, require_write
from ..service import Service

router = APIRouter(prefix="/api", tags=["ingest"])

ServiceDep = Annotated[Service, Depends(get_service)]


class IngestRequest(BaseModel):
    source: str = Field(
        ..., max_length=4096, description="An absolute path inside one of the server's ingest roots: a .csv/.jsonl file or a folder."
    )


@router.post("/ingest", status_code=202, dependencies=[Depends(require_write)])
async def ingest(body: IngestRequest, svc: ServiceDep) -> dict[str, Any]:
    """Start a bulk ingest in the background; poll ``/api/jobs/{id}`` for progress. Sources outside the ingest roots: 403."""
    return svc.start_ingest(body.source).to_dict()


@router.get("/jobs/{job_id}")
async def job_status(job_id: str, svc: ServiceDep) -> dict[str, Any]:
    job = svc.jobs.get(job_id)
    if job is None:
        raise NotFoundError(f"no job {job_id!r}")
    return job.to_dict()
