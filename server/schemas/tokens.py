"""Bodies for operator API tokens and enrollment tokens."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from server.db.models import Role

Tag = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.:=-]{0,63}$")]


class ApiTokenCreate(BaseModel):
    name: Annotated[str, StringConstraints(min_length=1, max_length=128)]
    role: Role


class ApiTokenOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    name: str
    role: Role
    created_at: datetime
    revoked_at: datetime | None


class ApiTokenCreated(ApiTokenOut):
    token: str = Field(description="shown once; only its hash is stored")


class EnrollmentTokenCreate(BaseModel):
    ttl_s: int = Field(default=24 * 3600, ge=60, le=365 * 24 * 3600)
    tags: list[Tag] = Field(default_factory=list, max_length=32)


class EnrollmentTokenCreated(BaseModel):
    token: str = Field(description="one-time; shown once")
    expires_at: datetime
