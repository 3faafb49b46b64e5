"""Drift events: list and filter, detail with a presigned sample URL, operator labels."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Path, status

from server import drift_views
from server.api.deps import BackendsDep, OperatorDep, SessionDep, ViewerDep
from server.api.errors import ProblemType
from server.api.idempotency import IdempotencyDep
from server.api.openapi import problems
from server.labels import add_label
from server.pagination import PageDep
from server.schemas import Page
from server.schemas.drift import DriftEventDetail, DriftEventOut, LabelCreate, LabelOut

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
    return drift_views.events(session, page, device_id, detector, model_version, since, until)


@router.get("/events/{event_id}")
def get_event(event_id: EventId, session: SessionDep, backends: BackendsDep, _: ViewerDep) -> DriftEventDetail:
    """One event with its feature vector, labels, and a short-lived URL of its sample image."""
    return drift_views.event(session, backends, event_id)


@router.post("/events/{event_id}/labels", status_code=status.HTTP_201_CREATED, responses=problems(ProblemType.conflict))
def label_event(event_id: EventId, body: LabelCreate, session: SessionDep, operator: OperatorDep,
                once: IdempotencyDep) -> LabelOut:
    """Label a drift sample; the device receives it in its next heartbeat response."""
    claim = once.claim(operator, f"POST /drift/events/{event_id}/labels", body)
    if (earlier := claim.replay(LabelOut)) is not None:
        return earlier
    label = claim.keep(LabelOut.model_validate(add_label(session, event_id, body.label, operator.name)))
    session.commit()
    return label
