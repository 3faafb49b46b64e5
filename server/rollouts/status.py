"""Where a rollout stands: per-wave counts, per-device state, and the decisions taken."""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from server.db.models import Bundle, Device, Rollout, RolloutDevice, RolloutEvent
from server.errors import NotFoundError


def get(session: Session, rollout_id: int) -> tuple[Rollout, Bundle]:
    """A rollout and its bundle."""
    rollout = session.get(Rollout, rollout_id)
    if rollout is None:
        raise NotFoundError(f"no rollout {rollout_id}")
    bundle = session.get(Bundle, rollout.bundle_id)
    assert bundle is not None
    return rollout, bundle


def waves(session: Session, rollout: Rollout) -> list[dict[str, Any]]:
    """Each wave's plan and its devices counted by state."""
    rows = session.execute(
        select(RolloutDevice.wave, RolloutDevice.state, func.count())
        .where(RolloutDevice.rollout_id == rollout.id).group_by(RolloutDevice.wave, RolloutDevice.state)
    )
    counts: dict[int, dict[str, int]] = {}
    for wave, state, count in rows:
        counts.setdefault(wave, {})[state] = count
    return [{"index": i, **plan, "devices": sum(counts.get(i, {}).values()), "by_state": counts.get(i, {})}
            for i, plan in enumerate(rollout.waves)]


def devices(session: Session, rollout_id: int) -> list[dict[str, Any]]:
    """Every device of a rollout with its state and latest report."""
    rows = session.execute(
        select(RolloutDevice, Device.model_version, Device.update_state, Device.health, Device.last_seen)
        .join(Device, Device.id == RolloutDevice.device_id)
        .where(RolloutDevice.rollout_id == rollout_id).order_by(RolloutDevice.wave, RolloutDevice.device_id)
    )
    return [{"device_id": rd.device_id, "wave": rd.wave, "state": rd.state, "previous_version": rd.previous_version,
             "assigned_at": rd.assigned_at, "switched_at": rd.switched_at, "model_version": version,
             "update_state": update_state, "health": health, "last_seen": last_seen}
            for rd, version, update_state, health, last_seen in rows]


def events(session: Session, rollout_id: int) -> list[RolloutEvent]:
    """The decisions, oldest first."""
    return list(session.scalars(select(RolloutEvent).where(RolloutEvent.rollout_id == rollout_id)
                                .order_by(RolloutEvent.id)))
