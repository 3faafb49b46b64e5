"""What operators do with rollouts: create (plan the waves), pause, resume, abort."""

from __future__ import annotations

import math
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import func, insert, select
from sqlalchemy.orm import Session

from server.db.models import Bundle, Device, DeviceStatus, Rollout, RolloutDevice
from server.errors import ConflictError, InputError, NotFoundError
from server.registry import catalog
from server.rollouts import assignment
from server.rollouts.controller import record
from server.rollouts.states import DeviceState, RolloutState, transition


def wave_ends(waves: list[dict[str, Any]], total: int) -> list[int]:
    """Cumulative device count at the end of each wave: `fraction` of the selection, or `count` more."""
    ends, reached = [], 0
    for wave in waves:
        if wave.get("fraction") is not None:
            reached = max(reached, min(total, math.ceil(float(wave["fraction"]) * total)))
        else:
            reached = min(total, reached + int(wave["count"]))
        ends.append(reached)
    return ends


def _selected(session: Session, selector: dict[str, Any], bundle: Bundle) -> list[str]:
    query = select(Device.id).where(Device.status == DeviceStatus.active.value)
    if selector.get("tags"):
        query = query.where(Device.tags.contains(list(selector["tags"])))
    if selector.get("device_ids"):
        query = query.where(Device.id.in_(list(selector["device_ids"])))
    # A stable, per-bundle shuffle: canaries are not always the same devices.
    return list(session.scalars(query.order_by(func.md5(Device.id + bundle.target_path))))


def _busy(session: Session, device_ids: list[str]) -> list[str]:
    return list(session.scalars(select(RolloutDevice.device_id).where(
        RolloutDevice.active.is_(True), RolloutDevice.device_id.in_(device_ids)).limit(5)))


def create(session: Session, spec: dict[str, Any], created_by: str) -> Rollout:
    """Plan a rollout: select the devices, split them into waves; the controller starts wave 1."""
    bundle = catalog.bundle(session, spec["model"], spec["bundle_version"])
    devices = _selected(session, spec["selector"], bundle)
    if not devices:
        raise InputError("the selector matches no active device")
    busy = _busy(session, devices)
    if busy:
        raise ConflictError(f"devices already in an active rollout: {', '.join(busy)}", existing=busy[0])
    rollout = Rollout(bundle_id=bundle.id, state=RolloutState.running.value, selector=spec["selector"],
                      waves=spec["waves"], gates=spec["gates"], wave_timeout_s=spec["wave_timeout_s"],
                      created_by=created_by)
    session.add(rollout)
    session.flush()
    ends, start = wave_ends(spec["waves"], len(devices)), 0
    rows = []
    for wave, end in enumerate(ends):
        rows += [{"rollout_id": rollout.id, "device_id": device, "wave": wave, "state": DeviceState.waiting.value}
                 for device in devices[start:end]]
        start = end
    session.execute(insert(RolloutDevice), rows)
    record(session, rollout, "created", f"{bundle.model} {bundle.version} to {len(rows)} device(s) in "
                                        f"{len(ends)} wave(s) by {created_by}", {"wave_ends": ends})
    return rollout


def locked(session: Session, rollout_id: int) -> Rollout:
    """A rollout with its row locked for a state change."""
    rollout = session.scalars(select(Rollout).where(Rollout.id == rollout_id).with_for_update()).first()
    if rollout is None:
        raise NotFoundError(f"no rollout {rollout_id}")
    return rollout


def pause(session: Session, rollout_id: int, by: str) -> Rollout:
    """Stop advancing; devices keep what they were assigned."""
    rollout = locked(session, rollout_id)
    rollout.state = transition(rollout.state, RolloutState.paused, f"rollout {rollout_id}")
    rollout.updated_at = datetime.now(UTC)
    record(session, rollout, "paused", f"paused by {by}")
    return rollout


def resume(session: Session, rollout_id: int, by: str) -> Rollout:
    """Continue; after an automatic rollback the current wave starts again."""
    rollout = locked(session, rollout_id)
    rollout.state = transition(rollout.state, RolloutState.running, f"rollout {rollout_id}")
    rollout.updated_at = datetime.now(UTC)
    if rollout.rolled_back:
        rollout.rolled_back, rollout.wave_started_at = False, None
    record(session, rollout, "resumed", f"resumed by {by}")
    return rollout


def abort(session: Session, rollout_id: int, by: str) -> Rollout:
    """End the rollout and send every device it touched back to its previous bundle."""
    rollout = locked(session, rollout_id)
    state = transition(rollout.state, RolloutState.aborted, f"rollout {rollout_id}")
    bundle = session.get(Bundle, rollout.bundle_id)
    assert bundle is not None
    count = assignment.roll_back(session, rollout, bundle)
    assignment.release(session, rollout)
    rollout.state, rollout.updated_at = state, datetime.now(UTC)
    record(session, rollout, "aborted", f"aborted by {by}; {count} device(s) sent back")
    return rollout
