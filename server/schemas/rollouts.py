"""Bodies for rollouts: the plan (selector, waves, gates) and its status."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, model_validator

from server.schemas.devices import Version
from server.schemas.tokens import Tag

DeviceId = Annotated[str, StringConstraints(min_length=1, max_length=40)]


class Selector(BaseModel):
    """Exactly one of: the whole fleet, devices having every tag, or listed devices."""

    model_config = ConfigDict(extra="forbid")

    fleet: bool = False
    tags: list[Tag] | None = Field(default=None, min_length=1, max_length=32)
    device_ids: list[DeviceId] | None = Field(default=None, min_length=1, max_length=10_000)

    @model_validator(mode="after")
    def _exactly_one(self) -> Selector:
        if sum((self.fleet, self.tags is not None, self.device_ids is not None)) != 1:
            raise ValueError("give exactly one of fleet, tags, device_ids")
        return self


class Wave(BaseModel):
    """`fraction`: share of the selection updated once this wave is assigned (cumulative); `count`: devices added."""

    model_config = ConfigDict(extra="forbid")

    fraction: float | None = Field(default=None, gt=0, le=1)
    count: int | None = Field(default=None, ge=1, le=1_000_000)
    soak_s: float = Field(ge=0, le=30 * 24 * 3600, description="time each device runs the bundle before gates")

    @model_validator(mode="after")
    def _one_size(self) -> Wave:
        if (self.fraction is None) == (self.count is None):
            raise ValueError("give exactly one of fraction, count")
        return self


class Gates(BaseModel):
    """Limits checked after each wave's soak; None skips a gate."""

    model_config = ConfigDict(extra="forbid")

    max_drift_alarm_rate: float | None = Field(default=None, ge=0, description="alarms per 1000 frames")
    max_error_rate: float | None = Field(default=None, ge=0)
    max_p95_latency_ratio: float | None = Field(default=None, gt=0, description="vs the previous model")
    min_healthy_fraction: float | None = Field(default=0.9, ge=0, le=1)


class RolloutCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    model: Annotated[str, StringConstraints(min_length=1, max_length=128)]
    bundle_version: Version
    selector: Selector
    waves: list[Wave] = Field(min_length=1, max_length=20)
    gates: Gates = Field(default_factory=Gates)
    wave_timeout_s: int = Field(default=3600, ge=1, le=30 * 24 * 3600,
                                description="after this, devices still updating count as unhealthy")


class WaveStatus(BaseModel):
    index: int
    fraction: float | None = None
    count: int | None = None
    soak_s: float
    devices: int
    by_state: dict[str, int]


class RolloutOut(BaseModel):
    id: int
    model: str
    bundle_version: str
    target: str
    state: str
    rolled_back: bool
    current_wave: int
    wave_started_at: datetime | None
    selector: dict[str, Any]
    gates: dict[str, Any]
    wave_timeout_s: int
    created_by: str
    created_at: datetime
    updated_at: datetime
    waves: list[WaveStatus]


class RolloutDeviceOut(BaseModel):
    device_id: str
    wave: int
    state: str
    previous_version: str | None
    assigned_at: datetime | None
    switched_at: datetime | None
    model_version: str | None
    update_state: str | None
    health: dict[str, Any] | None
    last_seen: datetime | None


class RolloutEventOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    at: datetime
    wave: int | None
    decision: str
    reason: str
    details: dict[str, Any]
