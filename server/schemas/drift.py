"""Bodies for drift events, sample labels, metrics and logs."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, StringConstraints

LabelText = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9 _.:-]{0,63}$")]


class DriftEventOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    device_id: str
    seq: int
    package_id: str
    ts: datetime | None
    received_at: datetime
    frame_seq: int | None
    detector: str
    statistic: float | None
    threshold: float | None
    model_version: str | None
    label: str | None
    confidence: float | None


class LabelOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    drift_event_id: int
    device_id: str
    seq: int
    label: str
    created_by: str
    created_at: datetime
    delivered_at: datetime | None


class DriftEventDetail(DriftEventOut):
    vector: list[float | None] | None
    sample_url: str | None
    labels: list[LabelOut]


class LabelCreate(BaseModel):
    label: LabelText


class MetricPointOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    seq: int
    name: str
    value: float
    ts: datetime | None


class LogLine(BaseModel):
    seq: int
    ts: datetime | None
    level: str | None
    logger: str | None
    message: str | None
    package_id: str
    extra: dict[str, Any] | None = None
