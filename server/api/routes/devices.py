"""The fleet: enrollment, list, summary, detail, update, decommission, desired state."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Query, status
from sqlalchemy import update

from server import device_views, fleet
from server.api.deps import (
    AddressDep,
    DeviceOrViewerDep,
    LimitsDep,
    OperatorDep,
    SessionDep,
    SettingsDep,
    TokenDep,
    ViewerDep,
    forbidden,
    unauthorized,
)
from server.api.errors import ProblemType
from server.api.openapi import problems
from server.db.models import Device, DeviceStatus
from server.errors import NotFoundError
from server.identity import ENROLLMENT_PREFIX, enroll_device
from server.pagination import PageDep
from server.ratelimit import Kind
from server.schemas import Page
from server.schemas.devices import (
    DesiredStateUpdate,
    DeviceOut,
    DeviceUpdate,
    EnrollRequest,
    EnrollResponse,
    FleetSummary,
)

router = APIRouter(prefix="/devices", tags=["devices"])


@router.post("/enroll", status_code=status.HTTP_201_CREATED, responses=problems(ProblemType.forbidden))
def enroll(body: EnrollRequest, session: SessionDep, token: TokenDep, limits: LimitsDep,
           address: AddressDep) -> EnrollResponse:
    """Exchange a one-time enrollment token (as bearer) for a device id and secret (429 after repeated failures)."""
    if not token.startswith(ENROLLMENT_PREFIX):
        raise forbidden("enrollment needs an enrollment token")
    keys = limits.keys(Kind.enrollment, address, token)
    limits.check(session, keys)  # before the token is tried, so a lockout tells nothing about it
    enrolled = enroll_device(session, token, dict(body.hardware), body.name, body.attempt_key)
    if enrolled is None:
        session.rollback()
        limits.failed(session, keys)
        session.commit()
        raise unauthorized("enrollment token is unknown, expired or already used")
    session.commit()
    return EnrollResponse(device_id=enrolled[0], device_secret=enrolled[1])


@router.get("")
def list_devices(
    session: SessionDep,
    _: ViewerDep,
    page: PageDep,
    status_: Annotated[DeviceStatus | None, Query(alias="status")] = None,
    tag: Annotated[list[str] | None, Query(max_length=32)] = None,
    model_version: str | None = None,
    seen_after: datetime | None = None,
    seen_before: datetime | None = None,
    silent_for_s: Annotated[int | None, Query(ge=1, le=10**8)] = None,
) -> Page[DeviceOut]:
    """Devices matching every given filter (`tag` may repeat: all must be present; `silent_for_s`: no
    heartbeat for that long, or never, as the summary counts offline devices)."""
    return device_views.devices(session, page, status_, tag or (), model_version, seen_after, seen_before,
                                silent_for_s)


@router.get("/summary")
def fleet_summary(
    session: SessionDep, settings: SettingsDep, _: ViewerDep,
    offline_after_s: Annotated[int | None, Query(ge=1, le=10**8)] = None,
) -> FleetSummary:
    """Counts by status and model version, and how many active devices are silent."""
    return device_views.summary(session, offline_after_s or settings.offline_after_s)


@router.get("/{device_id}")
def get_device(device_id: str, session: SessionDep, _: DeviceOrViewerDep) -> DeviceOut:
    """One device (any operator, or the device itself)."""
    return device_views.device(session, device_id)


@router.patch("/{device_id}")
def update_device(device_id: str, body: DeviceUpdate, session: SessionDep, _: OperatorDep) -> DeviceOut:
    """Change name, location or tags (only the fields sent)."""
    device = fleet.device(session, device_id)
    for name, value in body.model_dump(exclude_unset=True).items():
        setattr(device, name, value if name != "tags" else sorted(set(value or [])))
    session.commit()
    return DeviceOut.model_validate(device)


@router.post("/{device_id}/decommission")
def decommission(device_id: str, session: SessionDep, _: OperatorDep) -> DeviceOut:
    """Retire a device: its secret stops working at once; its data stays."""
    device = fleet.device(session, device_id)
    if device.status != DeviceStatus.decommissioned:
        device.status = DeviceStatus.decommissioned.value
        device.secret_hash = None
        device.decommissioned_at = datetime.now(UTC)
    session.commit()
    return DeviceOut.model_validate(device)


@router.put("/{device_id}/desired")
def set_desired(device_id: str, body: DesiredStateUpdate, session: SessionDep, _: OperatorDep) -> DeviceOut:
    """Assign the bundle version the device should run (delivered with its next heartbeat)."""
    done = session.execute(
        update(Device).where(Device.id == device_id).values(desired_bundle_version=body.bundle_version)
        .returning(Device.id)
    ).first()
    if done is None:
        raise NotFoundError(f"no device {device_id}")
    session.commit()
    return DeviceOut.model_validate(fleet.device(session, device_id))
