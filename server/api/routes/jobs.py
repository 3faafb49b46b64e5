"""Import jobs (admin): see what is queued or parked, and requeue parked ones."""

from __future__ import annotations

from fastapi import APIRouter
from sqlalchemy import select

from server.api.deps import AdminDep, SessionDep
from server.api.routes.devices import Limit, Offset
from server.api.schemas.sync import JobOut, RequeueResult
from server.db.models import Job, JobState
from server.worker.queue import requeue_parked

router = APIRouter(prefix="/jobs", tags=["jobs"])


@router.get("")
def list_jobs(session: SessionDep, _: AdminDep, state: JobState | None = None, device_id: str | None = None,
              limit: Limit = 50, offset: Offset = 0) -> list[JobOut]:
    """Import jobs, newest first, optionally of one state and one device."""
    query = select(Job).order_by(Job.id.desc()).limit(limit).offset(offset)
    if state is not None:
        query = query.where(Job.state == state.value)
    if device_id is not None:
        query = query.where(Job.device_id == device_id)
    return [JobOut.model_validate(row) for row in session.scalars(query)]


@router.post("/requeue")
def requeue(session: SessionDep, _: AdminDep, package_id: str | None = None,
            device_id: str | None = None) -> RequeueResult:
    """Give parked jobs a fresh set of attempts (after an outage or a fix); package ids are per device."""
    count = requeue_parked(session, package_id, device_id)
    session.commit()
    return RequeueResult(requeued=count)
