"""What devices report besides drift: metric time series and log lines, per device."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Query
from sqlalchemy import select

from server.api.deps import DeviceOrViewerDep, SessionDep
from server.api.schemas.drift import LogLine, MetricPointOut
from server.db.models import Metric, Record

router = APIRouter(prefix="/devices", tags=["telemetry"])
Limit = Annotated[int, Query(ge=1, le=10_000)]


@router.get("/{device_id}/metrics")
def metric_series(
    device_id: str,
    session: SessionDep,
    _: DeviceOrViewerDep,
    name: Annotated[list[str] | None, Query(max_length=32)] = None,
    since: datetime | None = None,
    until: datetime | None = None,
    limit: Limit = 1000,
) -> list[MetricPointOut]:
    """Metric points in sequence order (device timestamps may be wrong; `seq` is authoritative)."""
    query = select(Metric).where(Metric.device_id == device_id)
    if name:
        query = query.where(Metric.name.in_(name))
    if since is not None:
        query = query.where(Metric.ts >= since)
    if until is not None:
        query = query.where(Metric.ts < until)
    rows = session.scalars(query.order_by(Metric.seq, Metric.name).limit(limit))
    return [MetricPointOut.model_validate(row) for row in rows]


@router.get("/{device_id}/logs")
def log_lines(
    device_id: str,
    session: SessionDep,
    _: DeviceOrViewerDep,
    level: Annotated[str | None, Query(max_length=16)] = None,
    after_seq: Annotated[int | None, Query(ge=0, le=2**62)] = None,
    limit: Limit = 200,
) -> list[LogLine]:
    """Log lines in sequence order, after `after_seq` if given (for paging forward)."""
    query = select(Record).where(Record.device_id == device_id, Record.kind == "log")
    if level is not None:
        query = query.where(Record.data["level"].astext == level.upper())
    if after_seq is not None:
        query = query.where(Record.seq > after_seq)
    rows = session.scalars(query.order_by(Record.seq).limit(limit))
    return [_log_line(row) for row in rows]


def _log_line(row: Record) -> LogLine:
    data = dict(row.data)
    known = {k: data.pop(k, None) for k in ("level", "logger", "message")}
    return LogLine(seq=row.seq, ts=row.ts, package_id=row.package_id, extra=data or None,
                   **{k: str(v) if v is not None else None for k, v in known.items()})
