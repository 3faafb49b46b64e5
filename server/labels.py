"""Operator labels for drift samples, queued for the device's next heartbeat."""

from __future__ import annotations

from sqlalchemy import update
from sqlalchemy.orm import Session

from server.db.models import Device, DriftEvent, DriftLabel
from server.errors import NotFoundError


def add_label(session: Session, event_id: int, label: str, author: str) -> DriftLabel:
    """Label the sample of a drift event; the device receives it with its next heartbeat."""
    event = session.get(DriftEvent, event_id)
    if event is None:
        raise NotFoundError(f"no drift event {event_id}")
    row = DriftLabel(drift_event_id=event.id, device_id=event.device_id, seq=event.seq, label=label,
                     created_by=author)
    session.add(row)
    session.execute(
        update(Device).where(Device.id == event.device_id).values(pending_labels=Device.pending_labels + 1)
    )
    session.flush()
    return row
