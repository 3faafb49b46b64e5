"""`/ui/drift`: drift events across the fleet, one event with its sample, and labelling that sample."""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import IO, Annotated

from fastapi import APIRouter, Form, Path, Query, Request, Response, status
from fastapi.responses import StreamingResponse
from pydantic import ValidationError

from server import drift_views, images
from server.api.deps import BackendsDep, SessionDep
from server.api.headers import object_headers
from server.db.models import DriftEvent
from server.errors import NotFoundError
from server.labels import add_label
from server.pagination import Paging
from server.schemas.drift import LabelCreate
from server.ui.fleet import per_hour
from server.ui.render import UiRoute, page, redirect
from server.ui.session import ActingDep, UiSessionDep

router = APIRouter(route_class=UiRoute)
PAGE_SIZE = 100
Text = Annotated[str | None, Query(max_length=128)]
EventId = Annotated[int, Path(ge=1, le=2**63 - 1)]  # as the API bounds it
LABEL_RULE = "1 to 64 letters, digits, spaces or _ . : -, starting with a letter or digit"
_SPOOL_BYTES = 1024 * 1024  # a sample larger than this is spooled to a temporary file, not held in memory
_CHUNK = 64 * 1024


@router.get("/drift")
def events_page(request: Request, session: SessionDep, ui: UiSessionDep, device_id: Text = None,
                detector: Text = None, hours: Annotated[int, Query(ge=1, le=24 * 365)] = 48,
                offset: Annotated[int, Query(ge=0, le=10**9)] = 0) -> Response:
    """Drift events, newest first, by device and detector, with their arrival over time."""
    since = datetime.now(UTC) - timedelta(hours=hours)
    events = drift_views.events(session, Paging(PAGE_SIZE, offset), device_id=device_id or None,
                                detector=detector or None, since=since)
    by_device: dict[str, int] = {}
    for event in events.items:
        by_device[event.device_id] = by_device.get(event.device_id, 0) + 1
    filters = {"device_id": device_id or "", "detector": detector or "", "hours": hours}
    return page(request, "drift.html", ui, title="Drift", events=events, hourly=per_hour(events.items),
                by_device=sorted(by_device.items(), key=lambda kv: -kv[1])[:10], filters=filters,
                page_size=PAGE_SIZE)


def _event_page(request: Request, session: SessionDep, backends: BackendsDep, ui: UiSessionDep, event_id: int,
                error: str | None = None, value: str = "", code: int = status.HTTP_200_OK) -> Response:
    event = drift_views.event(session, backends, event_id)
    labelled = request.query_params.get("labelled") == "1"
    return page(request, "drift_event.html", ui, code, title=f"Drift event {event.id}", event=event,
                error=error, value=value, labelled=labelled, label_rule=LABEL_RULE)


@router.get("/drift/{event_id}")
def event_page(event_id: EventId, request: Request, session: SessionDep, backends: BackendsDep,
               ui: UiSessionDep) -> Response:
    """One event: detector figures, the sample image, its feature vector and its labels."""
    return _event_page(request, session, backends, ui, event_id)


@router.get("/drift/{event_id}/sample")
def sample_image(event_id: EventId, session: SessionDep, backends: BackendsDep, _: UiSessionDep) -> Response:
    """The event's sample, from either object store, as the type its bytes prove, sandboxed and never sniffed.

    Served from this origin so pages need no other image origin; bytes that are not a JPEG or PNG
    (stored before images were checked) are not served at all.
    """
    event = session.get(DriftEvent, event_id)
    if event is None or event.sample_key is None:
        raise NotFoundError(f"drift event {event_id} has no sample")
    spool = tempfile.SpooledTemporaryFile(max_size=_SPOOL_BYTES)  # noqa: SIM115 - _chunks closes it
    try:
        backends.store.download("drift-samples", event.sample_key, spool)
        spool.seek(0)
        image = images.sniff(spool.read(images.HEAD_BYTES))
        if image is None:
            raise NotFoundError(f"the sample of drift event {event_id} is not a JPEG or PNG")
        spool.seek(0)
    except BaseException:
        spool.close()
        raise
    return StreamingResponse(_chunks(spool), media_type=image.content_type,
                             headers=object_headers(image.content_type))


def _chunks(spool: IO[bytes]) -> Iterator[bytes]:
    try:
        while chunk := spool.read(_CHUNK):
            yield chunk
    finally:
        spool.close()


@router.post("/drift/{event_id}/labels")
def label_sample(event_id: EventId, request: Request, session: SessionDep, backends: BackendsDep, ui: ActingDep,
                 label: Annotated[str, Form()] = "") -> Response:
    """Validate a label and queue it for the device as the API does."""
    value = label.strip()
    try:
        body = LabelCreate(label=value)
    except ValidationError:
        return _event_page(request, session, backends, ui, event_id, f"A label is {LABEL_RULE}.", value,
                           status.HTTP_422_UNPROCESSABLE_CONTENT)
    add_label(session, event_id, body.label, ui.operator.name)
    session.commit()
    return redirect(request, f"/ui/drift/{event_id}?labelled=1#labels")
