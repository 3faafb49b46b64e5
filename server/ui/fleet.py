"""`/ui/` and `/ui/devices/{id}`: the fleet at a glance and one device in detail.

Every figure comes from the views the JSON API answers with (`server.device_views`, `server.drift_views`).
"""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Annotated

from fastapi import APIRouter, Path, Query, Request, Response

from server import device_views, drift_views
from server.api.deps import BackendsDep, SessionDep, SettingsDep
from server.db.models import DeviceStatus
from server.pagination import Paging
from server.schemas.drift import DriftEventOut, MetricPointOut
from server.ui.render import UiRoute, page
from server.ui.session import UiSessionDep

router = APIRouter(route_class=UiRoute)
PAGE_SIZE = 100
Text = Annotated[str | None, Query(max_length=128)]
# Each chart shows the first of its metric names a device reports.
CHARTS = (("Latency p95", "ms", ("latency_ms_p95", "latency_ms")),
          ("Confidence", "", ("confidence_mean", "confidence")),
          ("Drift-alarm rate", "alarms per 1000 frames", ("drift_alarm_rate",)))


@router.get("/")
def fleet_page(request: Request, session: SessionDep, settings: SettingsDep, ui: UiSessionDep,
               q: Text = None, status: Text = None, tag: Text = None, model_version: Text = None,
               offline: bool = False, offset: Annotated[int, Query(ge=0, le=10**9)] = 0) -> Response:
    """Counts by status and model version, silent devices, and a filterable device table."""
    summary = device_views.summary(session, settings.offline_after_s)
    chosen = status if status in {s.value for s in DeviceStatus} else None
    if offline:
        chosen = DeviceStatus.active.value  # as the summary counts them: decommissioned devices are not offline
    listed = device_views.devices(
        session, Paging(PAGE_SIZE, offset), status=DeviceStatus(chosen) if chosen else None, tags=[tag] if tag else (),
        model_version=model_version or None, silent_for_s=summary.offline_after_s if offline else None)
    needle = (q or "").strip().lower()
    rows = [d for d in listed.items
            if not needle or needle in " ".join([d.id, d.name or "", d.location or "", *d.tags]).lower()]
    filters = {"q": q or "", "status": chosen or "", "tag": tag or "", "model_version": model_version or "",
               "offline": offline}
    return page(request, "fleet.html", ui, title="Fleet", summary=summary, devices=rows, listed=listed,
                filters=filters, page_size=PAGE_SIZE, now=datetime.now(UTC))


def _series(points: list[MetricPointOut]) -> list[tuple[str, str, list[tuple[float, float]]]]:
    by_name: dict[str, list[tuple[float, float]]] = {}
    for point in points:
        by_name.setdefault(point.name, []).append((float(point.seq), point.value))
    charts = []
    for title, unit, names in CHARTS:
        found = next((by_name[name] for name in names if by_name.get(name)), [])
        charts.append((title, unit, found[-500:]))
    return charts


def per_hour(events: list[DriftEventOut]) -> list[tuple[str, int]]:
    """Events counted by the hour they arrived, oldest first, gaps filled (at most the last 48 hours)."""
    if not events:
        return []
    hours = Counter(e.received_at.astimezone(UTC).replace(minute=0, second=0, microsecond=0) for e in events)
    last = max(hours)
    first = max(min(hours), last - timedelta(hours=47))
    span = int((last - first).total_seconds() // 3600) + 1
    return [((first + timedelta(hours=i)).strftime("%m-%d %H:00"), hours.get(first + timedelta(hours=i), 0))
            for i in range(span)]


@router.get("/devices/{device_id}")
def device_page(device_id: Annotated[str, Path(max_length=40)], request: Request, session: SessionDep,
                backends: BackendsDep, ui: UiSessionDep) -> Response:
    """Identity, tags, model and update state, heartbeat, outbox, charts and recent drift events."""
    device = device_views.device(session, device_id)
    names = [name for _, _, names in CHARTS for name in names]
    points = device_views.metric_series(session, device_id, Paging(device_views.MAX_POINTS), names).items
    events = drift_views.events(session, Paging(200), device_id=device_id)
    recent = [drift_views.event(session, backends, e.id) for e in events.items[:6]]
    return page(request, "device.html", ui, title=device.name or device.id, device=device, charts=_series(points),
                events=events, recent=recent, hourly=per_hour(events.items))
