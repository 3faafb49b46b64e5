"""The fleet: device queries, fleet summary, and the heartbeat that reports and returns state."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from psycopg.rows import dict_row
from sqlalchemy import Engine, Select, func, select
from sqlalchemy.orm import Session

from server.db.engine import async_connections
from server.db.models import Device, DeviceStatus
from server.errors import NotFoundError
from server.ratelimit import BLOCKED_SQL


def _pyformat(statement: str) -> str:
    """`statement` with psycopg's `%(name)s` placeholders for `:name` ones (no `::` casts, no `%` in it)."""
    return re.sub(r"(?<![:\w]):(\w+)", r"%(\1)s", statement)


# Authenticates (a blocked credential key included), records and acknowledges in one statement: the heartbeat is
# the hottest path.
_HEARTBEAT = _pyformat(
    """
    WITH acked AS (
        UPDATE drift_labels SET delivered_at = now()
        WHERE device_id = :device_id AND id = ANY(CAST(:acked AS bigint[])) AND delivered_at IS NULL
          AND EXISTS (SELECT 1 FROM devices
                      WHERE id = :device_id AND secret_hash = :secret_hash AND status = 'active')
          AND NOT """ + BLOCKED_SQL + """
        RETURNING 1
    )
    UPDATE devices SET
        last_seen = now(),
        model_version = COALESCE(:model_version, model_version),
        update_state = COALESCE(:update_state, update_state),
        outbox_depth = COALESCE(:outbox_depth, outbox_depth),
        evictions = COALESCE(:evictions, evictions),
        health = COALESCE(CAST(:health AS jsonb), health),
        pending_labels = GREATEST(pending_labels - (SELECT count(*) FROM acked), 0)
    WHERE id = :device_id AND secret_hash = :secret_hash AND status = 'active' AND NOT """ + BLOCKED_SQL + """
    RETURNING desired_bundle_version, desired_model, pending_labels,
        (SELECT b.target_path FROM bundles b
         WHERE b.version = devices.desired_bundle_version
           AND (devices.desired_model IS NULL OR b.model = devices.desired_model)
         ORDER BY b.id DESC LIMIT 1) AS desired_target
    """
)
# The event's frame seq and feature vector ride along: the device's adapter learns from them.
_PENDING_LABELS = _pyformat(
    "SELECT l.id, l.drift_event_id, l.seq, l.label, e.frame_seq, e.vector, "
    "e.label AS predicted, e.model_version "
    "FROM drift_labels l JOIN drift_events e ON e.id = l.drift_event_id "
    "WHERE l.device_id = :device_id AND l.delivered_at IS NULL ORDER BY l.id LIMIT 100"
)


@dataclass(frozen=True)
class DeviceFilter:
    """Fleet list filters; None means "any"."""

    status: str | None = None
    tags: tuple[str, ...] = ()
    model_version: str | None = None
    seen_after: datetime | None = None
    seen_before: datetime | None = None
    silent_since: datetime | None = None  # no heartbeat since then, or never: what the summary counts offline


def filtered(query: Select[Any], where: DeviceFilter) -> Select[Any]:
    """Apply a `DeviceFilter` to a query over `Device`."""
    if where.status is not None:
        query = query.where(Device.status == where.status)
    if where.tags:
        query = query.where(Device.tags.contains(list(where.tags)))
    if where.model_version is not None:
        query = query.where(Device.model_version == where.model_version)
    if where.seen_after is not None:
        query = query.where(Device.last_seen >= where.seen_after)
    if where.seen_before is not None:
        query = query.where(Device.last_seen < where.seen_before)
    if where.silent_since is not None:
        query = query.where((Device.last_seen < where.silent_since) | Device.last_seen.is_(None))
    return query


def device(session: Session, device_id: str) -> Device:
    """One device; a `NotFoundError` if there is none."""
    found = session.get(Device, device_id)
    if found is None:
        raise NotFoundError(f"no device {device_id}")
    return found


def list_devices(session: Session, where: DeviceFilter, limit: int, offset: int) -> tuple[list[Device], int]:
    """One page of devices (oldest enrollment first) and the total count."""
    count = session.scalar(filtered(select(func.count()).select_from(Device), where)) or 0
    query = filtered(select(Device), where).order_by(Device.enrolled_at, Device.id).limit(limit).offset(offset)
    return list(session.scalars(query)), count


def summary(session: Session, offline_after_s: int) -> dict[str, Any]:
    """Counts by status and model version, and active devices silent for `offline_after_s`."""
    statuses = session.execute(select(Device.status, func.count()).group_by(Device.status))
    by_status = {status: count for status, count in statuses}
    active = Device.status == DeviceStatus.active.value
    version = func.coalesce(Device.model_version, "unknown")
    versions = session.execute(select(version, func.count()).where(active).group_by(version))
    cutoff = datetime.now(UTC) - timedelta(seconds=offline_after_s)
    offline = session.scalar(
        select(func.count()).select_from(Device).where(active, (Device.last_seen < cutoff) | Device.last_seen.is_(None))
    )
    return {"total": sum(by_status.values()), "by_status": by_status,
            "by_model_version": {name: count for name, count in versions},
            "offline": offline or 0, "offline_after_s": offline_after_s}


def _pending_label(row: dict[str, Any]) -> dict[str, Any]:
    if row["vector"] is not None and any(x is None for x in row["vector"]):
        row["vector"] = None  # a NaN/infinite component (stored as null) makes the vector unusable
    return row


async def heartbeat(engine: Engine, device_id: str, secret_hash: str, report: dict[str, Any], acked: list[int],
                    blocked: dict[str, Any]) -> tuple[dict[str, str | None], list[dict[str, Any]]] | None:
    """Record a heartbeat; returns (desired state, pending labels), or None if not authentic or its credential
    keys are blocked (`blocked`: `CredentialLimits.blocked_params`).

    One statement in autocommit on `engine`'s async connections: the statement is atomic by itself."""
    params = {**report, **blocked, "device_id": device_id, "secret_hash": secret_hash, "acked": acked,
              "health": json.dumps(report["health"]) if report.get("health") is not None else None}
    async with async_connections(engine).connection() as conn:
        cursor = conn.cursor(row_factory=dict_row)
        row = await (await cursor.execute(_HEARTBEAT, params)).fetchone()
        if row is None:
            return None
        labels: list[dict[str, Any]] = []
        if row["pending_labels"] > 0:
            await cursor.execute(_PENDING_LABELS, {"device_id": device_id})
            labels = [_pending_label(r) for r in await cursor.fetchall()]
    target = row["desired_target"]
    model = row["desired_model"] or (target.split("/", 1)[0] if target else None)
    return {"bundle_version": row["desired_bundle_version"], "model": model, "target": target}, labels
