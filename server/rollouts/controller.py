"""The rollout controller: one tick assigns, observes, evaluates and advances or rolls back.

Stateless between ticks, and safe with any number of workers ticking at once: each rollout is decided
under a row lock on it (`FOR UPDATE SKIP LOCKED`, re-checking that it still runs). A row lock rather
than one advisory lock because the decision belongs to one rollout: replicas step different rollouts
in parallel, operators' pause/resume/abort lock the same row, and a replica that dies frees it with
its transaction. A replica that finds the row taken skips it; one that comes after the commit reads
the new state (READ COMMITTED), for which the decision just made is no longer due.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import select, text
from sqlalchemy.orm import Session

from server.backends import Backends
from server.db.models import Bundle, Rollout, RolloutEvent
from server.rollouts import assignment
from server.rollouts.gates import Observation, evaluate
from server.rollouts.states import RolloutState, transition

logger = logging.getLogger(__name__)
_OBSERVATIONS = text(
    """
    SELECT rd.device_id, rd.state, rd.switched_at, rd.baseline_p95_ms, d.health
    FROM rollout_devices rd JOIN devices d ON d.id = rd.device_id
    WHERE rd.rollout_id = :rollout AND rd.wave <= :wave
    """
)


def record(session: Session, rollout: Rollout, decision: str, reason: str,
           details: dict[str, Any] | None = None) -> None:
    """Store one decision about a rollout."""
    session.add(RolloutEvent(rollout_id=rollout.id, wave=rollout.current_wave, decision=decision, reason=reason,
                             details=details or {}))
    logger.info("rollout %d wave %d: %s (%s)", rollout.id, rollout.current_wave, decision, reason)


def _number(health: dict[str, Any], name: str) -> float | None:
    value = health.get(name)
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def _observations(session: Session, rollout: Rollout) -> list[Observation]:
    rows = session.execute(_OBSERVATIONS, {"rollout": rollout.id, "wave": rollout.current_wave})
    found = []
    for row in rows:
        health = row.health or {}
        healthy = health.get("healthy")
        found.append(Observation(row.device_id, row.state, row.switched_at,
                                 healthy if isinstance(healthy, bool) else None,
                                 _number(health, "drift_alarm_rate"), _number(health, "error_rate"),
                                 _number(health, "latency_ms_p95"), row.baseline_p95_ms))
    return found


def _start_wave(session: Session, rollout: Rollout, bundle: Bundle, now: datetime) -> None:
    count = assignment.assign(session, rollout, bundle, now)
    rollout.wave_started_at = now
    record(session, rollout, "wave_started",
           f"wave {rollout.current_wave + 1} of {len(rollout.waves)}: {count} device(s) assigned {bundle.version}")


def _advance(session: Session, rollout: Rollout, bundle: Bundle, now: datetime) -> None:
    if rollout.current_wave + 1 >= len(rollout.waves):
        rollout.state = transition(rollout.state, RolloutState.completed)
        assignment.release(session, rollout)
        record(session, rollout, "completed", "every wave passed its gates")
        return
    rollout.current_wave += 1
    _start_wave(session, rollout, bundle, now)


def step(session: Session, rollout: Rollout, now: datetime) -> None:
    """Move one running rollout forward as far as its devices allow (the caller holds its row lock)."""
    bundle = session.get(Bundle, rollout.bundle_id)
    assert bundle is not None
    rollout.updated_at = now
    if rollout.wave_started_at is None:
        _start_wave(session, rollout, bundle, now)
        return
    assignment.observe(session, rollout, bundle, now)
    wave = rollout.waves[rollout.current_wave]
    deadline = rollout.wave_started_at + timedelta(seconds=rollout.wave_timeout_s) <= now
    verdict = evaluate(rollout.gates, _observations(session, rollout), float(wave["soak_s"]), now, deadline)
    if verdict.decision == "wait":
        return
    if verdict.decision == "pass":
        record(session, rollout, "wave_passed", verdict.reason, verdict.figures)
        _advance(session, rollout, bundle, now)
        return
    count = assignment.roll_back(session, rollout, bundle)
    rollout.state, rollout.rolled_back = transition(rollout.state, RolloutState.paused), True
    record(session, rollout, "rolled_back", f"gate breached: {verdict.reason}; {count} device(s) sent back",
           verdict.figures)


def tick(backends: Backends, now: datetime | None = None) -> int:
    """Step every running rollout no other worker is stepping; returns how many were stepped."""
    now = now or datetime.now(UTC)
    running = RolloutState.running.value
    with backends.sessions() as session:
        ids = list(session.scalars(select(Rollout.id).where(Rollout.state == running).order_by(Rollout.id)))
    stepped = 0
    for rollout_id in ids:
        with backends.sessions() as session:
            rollout = session.scalars(
                select(Rollout).where(Rollout.id == rollout_id, Rollout.state == running)
                .with_for_update(skip_locked=True)
            ).first()
            if rollout is None:
                continue
            step(session, rollout, now)
            session.commit()
            stepped += 1
    return stepped
