"""Bodies for enrollment, the fleet, and the heartbeat."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, model_validator

from server.schemas.tokens import Tag

Scalar = Annotated[str, StringConstraints(max_length=256)] | int | float | bool | None
ShortText = Annotated[str, StringConstraints(max_length=256)]
Version = Annotated[str, StringConstraints(min_length=1, max_length=64)]


class EnrollRequest(BaseModel):
    name: Annotated[str, StringConstraints(min_length=1, max_length=128)] | None = None
    attempt_key: Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_-]{32,128}$")] | None = Field(
        default=None, description="random, kept by the device: the same token with the same key may be retried "
        "after a lost answer and yields the same device id with a new secret")
    hardware: dict[Annotated[str, StringConstraints(max_length=64)], Scalar] = Field(
        default_factory=dict, max_length=64
    )


class EnrollResponse(BaseModel):
    device_id: str
    device_secret: str = Field(description="shown once; send as `Authorization: Bearer <secret>`")


class DeviceOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: str
    name: str | None
    location: str | None
    tags: list[str]
    status: str
    hardware: dict[str, Any]
    enrolled_at: datetime
    decommissioned_at: datetime | None
    last_seen: datetime | None
    model_version: str | None
    update_state: str | None
    outbox_depth: int | None
    evictions: int | None
    health: dict[str, Any] | None
    desired_bundle_version: str | None


class DeviceUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: Annotated[str, StringConstraints(min_length=1, max_length=128)] | None = None
    location: ShortText | None = None
    tags: list[Tag] | None = Field(default=None, max_length=32)


class DesiredStateUpdate(BaseModel):
    bundle_version: Version | None


class FleetSummary(BaseModel):
    total: int
    by_status: dict[str, int]
    by_model_version: dict[str, int]
    offline: int = Field(description="active devices without a heartbeat for `offline_after_s`")
    offline_after_s: int


class Heartbeat(BaseModel):
    model_version: Version | None = None
    update_state: Annotated[str, StringConstraints(max_length=32)] | None = None
    outbox_depth: int | None = Field(default=None, ge=0, le=2**31 - 1)
    evictions: int | None = Field(default=None, ge=0, le=2**62)
    health: dict[Annotated[str, StringConstraints(max_length=64)], Scalar] | None = Field(
        default=None, max_length=64
    )
    acked_labels: list[Annotated[int, Field(ge=1, le=2**62)]] = Field(
        default_factory=list, max_length=1000, description="ids of labels received in earlier responses"
    )

    @model_validator(mode="after")
    def _lift_from_health(self) -> Heartbeat:
        """Updaters may report `update_state` and `model_version` inside `health`; keep them top-level too."""
        health = self.health or {}
        if self.update_state is None and isinstance(health.get("update_state"), str):
            self.update_state = str(health["update_state"])[:32]
        if self.model_version is None and isinstance(health.get("model_version"), str):
            self.model_version = str(health["model_version"])[:64] or None
        return self


class DesiredState(BaseModel):
    bundle_version: str | None
    model: str | None = None
    target: str | None = Field(default=None, description="TUF target path of the bundle, if published")


class PendingLabel(BaseModel):
    id: int
    drift_event_id: int
    seq: int = Field(description="outbox seq of the drift event record")
    label: str
    frame_seq: int | None = Field(default=None, description="frame the drift sample came from, if reported")
    vector: list[float] | None = Field(default=None, description="feature vector of the drift sample")
    predicted: str | None = Field(default=None, description="the device's prediction for that frame, if reported")
    model_version: str | None = Field(default=None, description="the model that made that prediction")


class HeartbeatResponse(BaseModel):
    desired: DesiredState
    labels: list[PendingLabel]
