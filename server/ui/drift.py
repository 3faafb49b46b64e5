"""`/ui/drift`: drift events across the fleet, one event with its sample, and labelling that sample."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated

from fastapi import APIRouter, Form, Query, Request, Response, status
from pydantic import ValidationError

from server.api.deps import BackendsDep, SessionDep
from server.api.routes import drift as drift_api
from server.api.routes.drift import EventId
from server.api.schemas.drift import LabelCreate
from server.ui.fleet import per_hour
from server.ui.render import UiRoute, page, redirect
from server.ui.session import ActingDep, UiSessionDep

router = APIRouter(route_class=UiRoute)
PAGE_SIZE = 100
Text = Annotated[str | None, Query(max_length=128)]
LABEL_RULE = "1 to 64 letters, digits, spaces or _ . : -, starting with a letter or digit"


@router.get("/drift")
def events_page(request: Request, session: SessionDep, ui: UiSessionDep, device_id: Text = None,
                detector: Text = None, hours: Annotated[int, Query(ge=1, le=24 * 365)] = 48,
                offset: Annotated[int, Query(ge=0, le=10**9)] = 0) -> Response:
    """Drift events, newest first, by device and detector, with their arrival over time."""
    since = datetime.now(UTC) - timedelta(hours=hours)
    events = drift_api.list_events(session, ui.operator, device_id=device_id or None, detector=detector or None,
                                   model_version=None, since=since, until=None, limit=PAGE_SIZE, offset=offset)
    by_device: dict[str, int] = {}
    for event in events.items:
        by_device[event.device_id] = by_device.get(event.device_id, 0) + 1
    filters = {"device_id": device_id or "", "detector": detector or "", "hours": hours}
    return page(request, "drift.html", ui, title="Drift", events=events, hourly=per_hour(events.items),
                by_device=sorted(by_device.items(), key=lambda kv: -kv[1])[:10], filters=filters,
                page_size=PAGE_SIZE)


def _event_page(request: Request, session: SessionDep, backends: BackendsDep, ui: UiSessionDep, event_id: int,
                error: str | None = None, value: str = "", code: int = status.HTTP_200_OK) -> Response:
    event = drift_api.get_event(event_id, session, backends, ui.operator)
    labelled = request.query_params.get("labelled") == "1"
    return page(request, "drift_event.html", ui, code, title=f"Drift event {event.id}", event=event,
                error=error, value=value, labelled=labelled, label_rule=LABEL_RULE)


@router.get("/drift/{event_id}")
def event_page(event_id: EventId, request: Request, session: SessionDep, backends: BackendsDep,
               ui: UiSessionDep) -> Response:
    """One event: detector figures, the sample image, its feature vector and its labels."""
    return _event_page(request, session, backends, ui, event_id)


@router.post("/drift/{event_id}/labels")
def label_sample(event_id: EventId, request: Request, session: SessionDep, backends: BackendsDep, ui: ActingDep,
                 label: Annotated[str, Form()] = "") -> Response:
    """Validate a label and queue it for the device through the API's own label handler."""
    value = label.strip()
    try:
        body = LabelCreate(label=value)
    except ValidationError:
        return _event_page(request, session, backends, ui, event_id, f"A label is {LABEL_RULE}.", value,
                           status.HTTP_422_UNPROCESSABLE_CONTENT)
    drift_api.label_event(event_id, body, session, ui.operator)
    return redirect(request, f"/ui/drift/{event_id}?labelled=1#labels")
