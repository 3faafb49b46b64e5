"""Devices as the JSON API and the dashboard both show them: a filtered page, the summary, one device, and
the metric points and log lines each reported."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from server import fleet
from server.db.models import DeviceStatus, Metric, Record
from server.pagination import Paging
from server.schemas import Page
from server.schemas.devices import DeviceOut, FleetSummary
from server.schemas.drift import LogLine, MetricPointOut

MAX_POINTS = 10_000  # the most metric points or log lines one page holds


def devices(session: Session, page: Paging, status: DeviceStatus | None = None, tags: Sequence[str] = (),
            model_version: str | None = None, seen_after: datetime | None = None,
            seen_before: datetime | None = None, silent_for_s: int | None = None) -> Page[DeviceOut]:
    """Devices matching every given filter (`silent_for_s`: no heartbeat for that long, or never)."""
    silent_since = datetime.now(UTC) - timedelta(seconds=silent_for_s) if silent_for_s else None
    where = fleet.DeviceFilter(status.value if status else None, tuple(tags), model_version,
                               seen_after, seen_before, silent_since)
    found, count = fleet.list_devices(session, where, page.limit, page.offset)
    return page.page([DeviceOut.model_validate(d) for d in found], count)


def summary(session: Session, offline_after_s: int) -> FleetSummary:
    """Counts by status and model version, and how many active devices are silent for `offline_after_s`."""
    return FleetSummary(**fleet.summary(session, offline_after_s))


def device(session: Session, device_id: str) -> DeviceOut:
    """One device."""
    return DeviceOut.model_validate(fleet.device(session, device_id))


def metric_series(session: Session, device_id: str, page: Paging, names: Sequence[str] = (),
                  since: datetime | None = None, until: datetime | None = None) -> Page[MetricPointOut]:
    """A device's metric points (only `names` if given) in sequence order."""
    query = select(Metric).where(Metric.device_id == device_id)
    if names:
        query = query.where(Metric.name.in_(names))
    if since is not None:
        query = query.where(Metric.ts >= since)
    if until is not None:
        query = query.where(Metric.ts < until)
    count = session.scalar(select(func.count()).select_from(query.subquery())) or 0
    rows = session.scalars(query.order_by(Metric.seq, Metric.name).limit(page.limit).offset(page.offset))
    return page.page([MetricPointOut.model_validate(row) for row in rows], count)


def log_lines(session: Session, device_id: str, page: Paging, level: str | None = None,
              after_seq: int | None = None) -> Page[LogLine]:
    """A device's log lines in sequence order, only those after `after_seq` if given."""
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
