"""Drift events as the JSON API and the dashboard both show them: a filtered page, and one event with its
labels and a short-lived URL of its sample."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from server.backends import Backends
from server.db.models import DriftEvent, DriftLabel
from server.errors import NotFoundError
from server.pagination import Paging
from server.schemas import Page
from server.schemas.drift import DriftEventDetail, DriftEventOut, LabelOut


def events(session: Session, page: Paging, device_id: str | None = None, detector: str | None = None,
           model_version: str | None = None, since: datetime | None = None,
           until: datetime | None = None) -> Page[DriftEventOut]:
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


def event(session: Session, backends: Backends, event_id: int) -> DriftEventDetail:
    """One event with its feature vector, labels, and a short-lived URL of its sample image."""
    found = session.get(DriftEvent, event_id)
    if found is None:
        raise NotFoundError(f"no drift event {event_id}")
    labels = session.scalars(select(DriftLabel).where(DriftLabel.drift_event_id == event_id).order_by(DriftLabel.id))
    url = None
    if found.sample_key:
        url = backends.store.presigned_get_url("drift-samples", found.sample_key, backends.settings.presign_expiry_s)
    return DriftEventDetail(**DriftEventOut.model_validate(found).model_dump(), vector=found.vector,
                            sample_url=url, labels=[LabelOut.model_validate(label) for label in labels])
