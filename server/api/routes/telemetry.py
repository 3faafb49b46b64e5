"""What devices report besides drift: metric time series and log lines, per device."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Query
from sqlalchemy import func, select

from server.api.deps import DeviceOrViewerDep, SessionDep
from server.api.pagination import Paging, paging
from server.api.schemas import Page
from server.api.schemas.drift import LogLine, MetricPointOut
from server.db.models import Metric, Record

router = APIRouter(prefix="/devices", tags=["telemetry"])
MAX_POINTS = 10_000
PointsDep = Annotated[Paging, Depends(paging(1000, MAX_POINTS))]
LinesDep = Annotated[Paging, Depends(paging(200, MAX_POINTS))]


@router.get("/{device_id}/metrics")
def metric_series(
    device_id: str,
    session: SessionDep,
    _: DeviceOrViewerDep,
    page: PointsDep,
    name: Annotated[list[str] | None, Query(max_length=32)] = None,
    since: datetime | None = None,
    until: datetime | None = None,
) -> Page[MetricPointOut]:
    """Metric points in sequence order (device timestamps may be wrong; `seq` is authoritative)."""
    query = select(Metric).where(Metric.device_id == device_id)
    if name:
        query = query.where(Metric.name.in_(name))
    if since is not None:
        query = query.where(Metric.ts >= since)
    if until is not None:
        query = query.where(Metric.ts < until)
    count = session.scalar(select(func.count()).select_from(query.subquery())) or 0
    rows = session.scalars(query.order_by(Metric.seq, Metric.name).limit(page.limit).offset(page.offset))
    return page.page([MetricPointOut.model_validate(row) for row in rows], count)


@router.get("/{device_id}/logs")
def log_lines(
    device_id: str,
    session: SessionDep,
    _: DeviceOrViewerDep,
    page: LinesDep,
    level: Annotated[str | None, Query(max_length=16)] = None,
    after_seq: Annotated[int | None, Query(ge=0, le=2**62)] = None,
) -> Page[LogLine]:
    """Log lines in sequence order, only those after `after_seq` if given (to follow a device's log)."""
    query = select(Record).where(Record.device_id == device_id, Record.kind == "log")
    if level is not None:
        query = query.where(Record.data["level"].astext == level.upper())
    if after_seq is not None:
        query = query.where(Record.seq > after_seq)
    count = session.scalar(select(func.count()).select_from(query.subquery())) or 0
    rows = session.scalars(query.order_by(Record.seq).limit(page.limit).offset(page.offset))
    return page.page([_log_line(row) for row in rows], count)


def _log_line(row: Record) -> LogLine:
    data = dict(row.data)
    known = {k: data.pop(k, None) for k in ("level", "logger", "message")}
    return LogLine(seq=row.seq, ts=row.ts, package_id=row.package_id, extra=data or None,
                   **{k: str(v) if v is not None else None for k, v in known.items()})
