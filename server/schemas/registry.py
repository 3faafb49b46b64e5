"""Bodies for the registry: publishing signed metadata, models, bundle versions."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

SignedJson = Annotated[str, StringConstraints(min_length=2, max_length=900_000)]


class Lineage(BaseModel):
    model_config = ConfigDict(extra="forbid")

    mlflow_model: Annotated[str, StringConstraints(max_length=256)] | None = None
    mlflow_version: Annotated[str, StringConstraints(max_length=64)] | None = None
    mlflow_run_id: Annotated[str, StringConstraints(max_length=64)] | None = None
    source: Annotated[str, StringConstraints(max_length=512)] | None = None


class RootUpdate(BaseModel):
    metadata: SignedJson = Field(description="the next root version, exactly as signed")
    targets: SignedJson | None = Field(default=None, description="targets re-signed for it, if its keys changed")


class PublishRequest(BaseModel):
    metadata: SignedJson = Field(description="the next targets version, exactly as signed offline")
    lineage: Lineage | None = None


class RootOut(BaseModel):
    version: int


class UploadOut(BaseModel):
    target_path: str
    sha256: str
    length: int
    object_key: str


class ModelOut(BaseModel):
    model: str
    versions: int
    last_published_at: datetime


class BundleOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    model: str
    version: str
    target_path: str
    sha256: str
    length: int
    targets_version: int
    published_by: str
    published_at: datetime
    lineage: dict[str, Any]
    metrics: dict[str, Any] = Field(default_factory=dict, description="from bundle.json")
    devices_running: int | None = None


class BundleDetail(BundleOut):
    custom: dict[str, Any]
    manifest: dict[str, Any]
    signatures: dict[str, Any] = Field(description="keys that signed the current targets metadata")
