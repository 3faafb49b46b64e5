"""What devices report besides drift: metric time series and log lines, per device."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Query

from server import device_views
from server.api.deps import DeviceOrViewerDep, SessionDep
from server.device_views import MAX_POINTS
from server.pagination import Paging, paging
from server.schemas import Page
from server.schemas.drift import LogLine, MetricPointOut

router = APIRouter(prefix="/devices", tags=["telemetry"])
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
    return device_views.metric_series(session, device_id, page, name or (), since, until)


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
    return device_views.log_lines(session, device_id, page, level, after_seq)
