"""Drift events: list and filter, detail with a presigned sample URL, operator labels."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Path, status
from sqlalchemy import func, select

from server.api.deps import BackendsDep, OperatorDep, SessionDep, ViewerDep
from server.api.errors import ProblemType
from server.api.idempotency import NO_KEY, IdempotencyDep
from server.api.openapi import problems
from server.api.pagination import PageDep
from server.api.schemas import Page
from server.api.schemas.drift import DriftEventDetail, DriftEventOut, LabelCreate, LabelOut
from server.db.models import DriftEvent, DriftLabel
from server.errors import NotFoundError
from server.labels import add_label

router = APIRouter(prefix="/drift", tags=["drift"])
EventId = Annotated[int, Path(ge=1, le=2**63 - 1)]


@router.get("/events")
def list_events(
    session: SessionDep,
    _: ViewerDep,
    page: PageDep,
    device_id: str | None = None,
    detector: str | None = None,
    model_version: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
) -> Page[DriftEventOut]:
    """Drift events, newest first, matching every given filter (times are received times)."""
    query = select(DriftEvent)
    for column, value in ((DriftEvent.device_id, device_id), (DriftEvent.detector, detector),
                          (DriftEvent.model_version, model_version)):
        if value is not None:
            query = query.where(column == value)
    if since is not None:
        query = query.where(DriftEvent.received_at >= since)
    if until is not None:
        query = query.where(DriftEvent.received_at < until)
    count = session.scalar(select(func.count()).select_from(query.subquery())) or 0
    rows = session.scalars(query.order_by(DriftEvent.id.desc()).limit(page.limit).offset(page.offset))
    return page.page([DriftEventOut.model_validate(r) for r in rows], count)


@router.get("/events/{event_id}")
def get_event(event_id: EventId, session: SessionDep, backends: BackendsDep, _: ViewerDep) -> DriftEventDetail:
    """One event with its feature vector, labels, and a short-lived URL of its sample image."""
    event = session.get(DriftEvent, event_id)
    if event is None:
        raise NotFoundError(f"no drift event {event_id}")
    labels = session.scalars(select(DriftLabel).where(DriftLabel.drift_event_id == event_id).order_by(DriftLabel.id))
    url = None
    if event.sample_key:
        url = backends.store.presigned_get_url("drift-samples", event.sample_key, backends.settings.presign_expiry_s)
    return DriftEventDetail(**DriftEventOut.model_validate(event).model_dump(), vector=event.vector,
                            sample_url=url, labels=[LabelOut.model_validate(label) for label in labels])


@router.post("/events/{event_id}/labels", status_code=status.HTTP_201_CREATED, responses=problems(ProblemType.conflict))
def label_event(event_id: EventId, body: LabelCreate, session: SessionDep, operator: OperatorDep,
                once: IdempotencyDep = NO_KEY) -> LabelOut:
    """Label a drift sample; the device receives it in its next heartbeat response."""
    claim = once.claim(operator, f"POST /drift/events/{event_id}/labels", body)
    if (earlier := claim.replay(LabelOut)) is not None:
        return earlier
    label = claim.keep(LabelOut.model_validate(add_label(session, event_id, body.label, operator.name)))
    session.commit()
    return label
