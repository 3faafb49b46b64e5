"""Import jobs (admin): see what is queued or parked, and requeue parked ones."""

from __future__ import annotations

from fastapi import APIRouter
from sqlalchemy import func, select

from server.api.deps import AdminDep, SessionDep
from server.db.models import Job, JobState
from server.pagination import PageDep
from server.schemas import Page
from server.schemas.sync import JobOut, RequeueResult
from server.worker.queue import requeue_parked

router = APIRouter(prefix="/jobs", tags=["jobs"])


@router.get("")
def list_jobs(session: SessionDep, _: AdminDep, page: PageDep, state: JobState | None = None,
              device_id: str | None = None) -> Page[JobOut]:
    """Import jobs, newest first, optionally of one state and one device."""
    query = select(Job)
    if state is not None:
        query = query.where(Job.state == state.value)
    if device_id is not None:
        query = query.where(Job.device_id == device_id)
    count = session.scalar(select(func.count()).select_from(query.subquery())) or 0
    rows = session.scalars(query.order_by(Job.id.desc()).limit(page.limit).offset(page.offset))
    return page.page([JobOut.model_validate(row) for row in rows], count)


@router.post("/requeue")
def requeue(session: SessionDep, _: AdminDep, package_id: str | None = None,
            device_id: str | None = None) -> RequeueResult:
    """Give parked jobs a fresh set of attempts (after an outage or a fix); package ids are per device."""
    count = requeue_parked(session, package_id, device_id)
    session.commit()
    return RequeueResult(requeued=count)
