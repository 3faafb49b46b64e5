"""Bodies for package uploads."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict


class PackageOut(BaseModel):
    """A stored package; `(device_id, id)` is its key, `sha256` is that of the stored bytes."""

    model_config = ConfigDict(from_attributes=True)

    id: str
    device_id: str
    sha256: str
    size: int
    status: str
    received_at: datetime
    imported_at: datetime | None
    seq_first: int | None
    seq_last: int | None
    record_count: int | None
    error: str | None


class JobOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    kind: str
    device_id: str
    package_id: str
    state: str
    attempts: int
    run_after: datetime
    last_error: str | None
    created_at: datetime
    finished_at: datetime | None


class RequeueResult(BaseModel):
    requeued: int
