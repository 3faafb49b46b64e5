"""What one import sends to MLflow: the new records' metrics, drift samples and logs, grouped per run.

A record belongs to the run of its device and the model version it names (`model_version` in its data),
else the version the device last reported. The model name, the bundle's SHA-256 and the rollout that brought
the version come from the database (`bundles`, `rollouts`), read in the import's transaction.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from mlflow.entities import Metric
from sqlalchemy import select
from sqlalchemy.orm import Session

from server.db.models import Bundle, Device, Rollout, RolloutDevice
from server.package_format import PackageRecord
from server.tracking.bridge import LogLine, RunBatch, Sample
from server.tracking.runs import (
    TAG_BUNDLE_SHA256,
    TAG_DEVICE_ID,
    TAG_DEVICE_NAME,
    TAG_DEVICE_TAGS,
    TAG_MODEL,
    TAG_MODEL_VERSION,
    TAG_ROLLOUT_ID,
    UNKNOWN,
    RunKey,
    safe_name,
)


@dataclass(frozen=True)
class FeedItem:
    """One new record as MLflow sees it: its metric points, its drift sample or its log line (or just its version)."""

    record: PackageRecord
    points: dict[str, float]
    sample: tuple[str, bytes] | None = None  # (file suffix, bytes) of a drift event's checked image
    log: dict[str, Any] | None = None


def build(session: Session, device_id: str, created: datetime, items: list[FeedItem]) -> list[RunBatch]:
    """The run batches of one import; `created` (the package's time) stands in for a record without `ts`."""
    device = session.get(Device, device_id)
    batches: dict[str, RunBatch] = {}
    for item in items:
        version = _version(item.record.data, device)
        batch = batches.get(version)
        if batch is None:
            batch = batches[version] = run_batch(session, device_id, device, version)
        ts = _utc(item.record.ts or created)
        millis, day = int(ts.timestamp() * 1000), ts.date().isoformat()
        step = _step(item.record)
        batch.metrics.extend(Metric(name, value, millis, step) for name, value in item.points.items())
        if item.sample is not None:
            batch.samples.append(Sample(day, f"{item.record.seq}{item.sample[0]}", item.sample[1]))
        if item.log is not None:
            batch.logs.append(LogLine(day, item.record.seq, json.dumps(item.log, sort_keys=True)))
    return list(batches.values())  # an empty batch still opens the run of a version seen for the first time


def _utc(ts: datetime) -> datetime:
    """The time in UTC; a time without zone is taken as UTC."""
    return ts.replace(tzinfo=UTC) if ts.tzinfo is None else ts.astimezone(UTC)


def reported_version(data: dict[str, Any]) -> str | None:
    """The model version a record's data names, or None if it names none (its device's version is taken then)."""
    reported = data.get("model_version")
    return reported if isinstance(reported, str) and reported else None


def _version(data: dict[str, Any], device: Device | None) -> str:
    reported = reported_version(data)
    return safe_name(reported if reported is not None else device.model_version if device else None)


def _step(record: PackageRecord) -> int:
    """The device's frame counter when the record carries one, else its sequence number."""
    frame = record.data.get("frame_seq")
    if isinstance(frame, int) and not isinstance(frame, bool) and 0 <= frame < 2**63:
        return frame
    return record.seq


def run_batch(session: Session, device_id: str, device: Device | None, version: str) -> RunBatch:
    """An empty batch for the run of (device, version), with the tags the database knows."""
    bundles = _bundles(session, version)
    model = UNKNOWN
    if device is not None and device.desired_model in bundles:
        model = device.desired_model
    elif len(bundles) == 1:
        model = next(iter(bundles))
    tags = {TAG_DEVICE_ID: device_id, TAG_MODEL: model, TAG_MODEL_VERSION: version}
    if device is not None:
        tags[TAG_DEVICE_NAME] = device.name or ""
        tags[TAG_DEVICE_TAGS] = ",".join(device.tags or [])
    if model in bundles:
        tags[TAG_BUNDLE_SHA256] = bundles[model]
        rollout = session.scalar(
            select(Rollout.id).join(RolloutDevice, RolloutDevice.rollout_id == Rollout.id)
            .join(Bundle, Bundle.id == Rollout.bundle_id)
            .where(RolloutDevice.device_id == device_id, Bundle.model == model, Bundle.version == version)
            .order_by(Rollout.id.desc()).limit(1))
        if rollout is not None:
            tags[TAG_ROLLOUT_ID] = str(rollout)
    return RunBatch(RunKey(device_id, safe_name(model), version), tags)


_BUNDLE_CACHE = "tinysphere.feed.bundles"  # session.info key: version -> {model: sha256}, for one transaction


def _bundles(session: Session, version: str) -> dict[str, str]:
    """The bundles published under `version` (model -> SHA-256), read once per session: a worker importing
    several packages in one transaction asks once per version, not once per package."""
    cache: dict[str, dict[str, str]] = session.info.setdefault(_BUNDLE_CACHE, {})
    if version not in cache:
        cache[version] = {model: sha for model, sha in session.execute(
            select(Bundle.model, Bundle.sha256).where(Bundle.version == version))}
    return cache[version]
