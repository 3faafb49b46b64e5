"""Runs opened for the model versions devices report in their heartbeats, before any package names them.

A device's run for a (device, model version) is created when the device first reports that version: a heartbeat
stores the version on the device row, and the worker's periodic `open_reported_runs` finds the devices whose
reported version has no run yet and hands an empty batch for each to the bridge, whose flusher creates (or finds)
the run off the import path. The runs the bridge resolves are kept in `mlflow_runs`, so the scan is one indexed
anti-join over the devices that skips every version already opened, bounded per round.
"""

from __future__ import annotations

import logging

from sqlalchemy import select, text
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session

from server.db.models import Device, DeviceStatus, MlflowRun
from server.tracking.bridge import MlflowBridge
from server.tracking.feed import run_batch
from server.tracking.runs import safe_name

logger = logging.getLogger(__name__)
SCAN_LIMIT = 200  # devices whose run is asked for per round; the rest come in the next rounds
# The reported version as runs are keyed (`tracking.runs.safe_name`), in SQL: other characters become "_", 64 kept.
_MISSING = text(
    """
    SELECT d.id FROM devices d
    WHERE d.status = :active AND d.model_version IS NOT NULL AND d.model_version <> ''
      AND NOT EXISTS (
          SELECT 1 FROM mlflow_runs r
          WHERE r.device_id = d.id
            AND r.version = left(regexp_replace(d.model_version, '[^A-Za-z0-9._+-]', '_', 'g'), 64))
    ORDER BY d.last_seen DESC NULLS LAST, d.id
    LIMIT :limit
    """
)


def record_opened(session: Session, bridge: MlflowBridge) -> int:
    """Keep the runs the bridge resolved since the last call in `mlflow_runs`; how many (the caller commits)."""
    opened = bridge.take_opened()
    if opened:
        rows = [{"device_id": key.device_id, "version": key.version, "model": key.model, "run_id": run_id}
                for key, run_id in opened]
        existing = set(session.scalars(select(Device.id).where(Device.id.in_({r["device_id"] for r in rows}))))
        rows = [row for row in rows if row["device_id"] in existing]  # a run named for a device id never enrolled
        if rows:
            session.execute(insert(MlflowRun).values(rows).on_conflict_do_nothing(index_elements=["device_id",
                                                                                                  "version"]))
    return len(opened)


def open_reported_runs(session: Session, bridge: MlflowBridge, limit: int = SCAN_LIMIT) -> int:
    """Record the runs opened meanwhile, then ask the bridge for the run of each reported version that has none.

    Returns how many runs were asked for; the caller commits. Versions already waiting in the bridge (MLflow
    down, say) are not asked for again."""
    record_opened(session, bridge)
    ids = list(session.scalars(_MISSING, {"active": DeviceStatus.active.value, "limit": limit}))
    if not ids:
        return 0
    waiting = bridge.waiting()
    batches = []
    for device in session.scalars(select(Device).where(Device.id.in_(ids))):
        version = safe_name(device.model_version)
        if (device.id, version) not in waiting:
            batches.append(run_batch(session, device.id, device, version))
    bridge.add(batches)
    if batches:
        logger.info("opening the mlflow runs of %d reported model versions", len(batches))
    return len(batches)
