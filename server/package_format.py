"""The server's validation of the sync package a device uploads (`contract.package`, format 1).

Names, kinds and patterns come from the contract; these models check a manifest and each record line.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, field_validator, model_validator

from contract.package import FILE_NAME_PATTERN, MANIFEST_NAME, PACKAGE_ID_PATTERN, RECORDS_NAME

__all__ = ["MANIFEST_NAME", "PACKAGE_ID_PATTERN", "RECORDS_NAME", "Manifest", "PackageRecord"]

RecordKind = Literal["prediction", "drift_event", "adaptation", "metric", "log", "image"]  # = contract KINDS (tested)
MetricName = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_./ :-]{1,128}$")]
_FILE_NAME = re.compile(FILE_NAME_PATTERN)


class ManifestFile(BaseModel):
    """One file the manifest lists, with its digest and size."""

    model_config = ConfigDict(extra="forbid")

    name: str
    sha256: Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{64}$")]
    size: int = Field(ge=0)
    kind: Literal["records", "blob"]

    @field_validator("name")
    @classmethod
    def _plain_name(cls, name: str) -> str:
        if not _FILE_NAME.match(name):
            raise ValueError("file names are records.jsonl or blobs/<name>")
        return name


class Manifest(BaseModel):
    """manifest.json: what the package holds and the sequence range it covers."""

    model_config = ConfigDict(extra="ignore")

    format: Literal[1]  # = contract FORMAT (tested)
    package_id: Annotated[str, StringConstraints(pattern=PACKAGE_ID_PATTERN)]
    device_id: Annotated[str, StringConstraints(min_length=1, max_length=40)]
    seq_first: int = Field(ge=0)
    seq_last: int = Field(ge=0)
    record_count: int = Field(ge=0)
    created: datetime
    files: list[ManifestFile]

    @model_validator(mode="after")
    def _consistent(self) -> Manifest:
        if self.seq_last < self.seq_first:
            raise ValueError("seq_last is before seq_first")
        if self.record_count > self.seq_last - self.seq_first + 1:
            raise ValueError("record_count exceeds the sequence range")
        names = [f.name for f in self.files]
        if len(names) != len(set(names)):
            raise ValueError("a file is listed twice")
        if [f.name for f in self.files if f.kind == "records"] != [RECORDS_NAME]:
            raise ValueError("exactly one records.jsonl of kind 'records' is required")
        return self


class PackageRecord(BaseModel):
    """One line of records.jsonl."""

    model_config = ConfigDict(extra="ignore")

    seq: int = Field(ge=0)
    kind: RecordKind
    ts: datetime | None = None
    priority: int = 0
    data: dict[str, Any] = Field(default_factory=dict)
    blob: str | None = None


class DriftEventData(BaseModel):
    model_config = ConfigDict(extra="ignore")

    detector: Annotated[str, StringConstraints(min_length=1, max_length=64)]
    statistic: float | None = None
    threshold: float | None = None
    model_version: Annotated[str, StringConstraints(max_length=64)] | None = None
    label: Annotated[str, StringConstraints(max_length=128)] | None = None
    confidence: float | None = None
    vector: list[float | None] | None = Field(default=None, max_length=4096)


class MetricData(BaseModel):
    model_config = ConfigDict(extra="ignore")

    name: MetricName | None = None
    value: float | None = None  # null: the device measured NaN or infinity
    metrics: dict[MetricName, float | None] | None = Field(default=None, max_length=256)

    def points(self) -> dict[str, float]:
        """Every (name, value) this record carries, without the null ones."""
        found = {name: value for name, value in (self.metrics or {}).items() if value is not None}
        if self.name is not None and self.value is not None:
            found[self.name] = self.value
        return found

    @model_validator(mode="after")
    def _named(self) -> MetricData:
        if self.metrics is None and (self.name is None or "value" not in self.model_fields_set):
            raise ValueError("a metric needs name and value, or metrics")
        return self


class LogData(BaseModel):
    model_config = ConfigDict(extra="ignore")

    level: Annotated[str, StringConstraints(max_length=16)] = "INFO"
    logger: Annotated[str, StringConstraints(max_length=128)] = ""
    message: Annotated[str, StringConstraints(max_length=8192)]
