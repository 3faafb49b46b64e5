"""Setting devices' desired bundle: forward for a wave, back to what each ran before on rollback."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import TextClause, text
from sqlalchemy.orm import Session

from server.db.models import Bundle, Rollout
from server.rollouts.states import TOUCHED, DeviceState

# The statements name device states as `{waiting}` ..., and `{touched}` for the states rollback undoes.
_STATES = {**{state.name: f"'{state.value}'" for state in DeviceState},
           "touched": ", ".join(f"'{state.value}'" for state in TOUCHED)}


def _sql(statement: str) -> TextClause:
    """A statement with the device states filled in (constants, never input)."""
    return text(statement.format(**_STATES))


_CAPTURE = _sql(
    """
    UPDATE rollout_devices rd SET
        previous_version = COALESCE(d.desired_bundle_version, d.model_version),
        previous_model = CASE WHEN d.desired_bundle_version IS NULL THEN :model ELSE d.desired_model END,
        baseline_p95_ms = CASE WHEN jsonb_typeof(d.health -> 'latency_ms_p95') = 'number'
                               THEN (d.health ->> 'latency_ms_p95')::float END
    FROM devices d
    WHERE rd.device_id = d.id AND rd.rollout_id = :rollout AND rd.wave <= :wave AND rd.state = {waiting}
    """
)
_MARK = _sql(
    "UPDATE rollout_devices SET state = {assigned}, assigned_at = :now, switched_at = NULL "
    "WHERE rollout_id = :rollout AND wave <= :wave AND state IN ({waiting}, {rolled_back})"
)
_FORWARD = _sql(
    """
    UPDATE devices d SET desired_bundle_version = :version, desired_model = :model
    FROM rollout_devices rd
    WHERE rd.device_id = d.id AND rd.rollout_id = :rollout AND rd.wave <= :wave AND rd.state = {assigned}
    """
)
# Only devices still pointed at this rollout's bundle go back: a newer assignment wins.
_BACK = _sql(
    """
    UPDATE devices d SET desired_bundle_version = rd.previous_version, desired_model = rd.previous_model
    FROM rollout_devices rd
    WHERE rd.device_id = d.id AND rd.rollout_id = :rollout
      AND rd.state IN ({touched})
      AND d.desired_bundle_version = :version AND d.desired_model IS NOT DISTINCT FROM :model
    """
)
_MARK_BACK = _sql(
    "UPDATE rollout_devices SET state = {rolled_back} "
    "WHERE rollout_id = :rollout AND state IN ({touched})"
)
_OBSERVE = _sql(
    """
    UPDATE rollout_devices rd SET
        state = CASE
            WHEN d.model_version = :version AND COALESCE(d.update_state, '') <> 'ROLLED_BACK' THEN {updated}
            WHEN rd.state IN ({updating}, {updated}) AND d.update_state = 'ROLLED_BACK' THEN {failed}
            WHEN d.update_state IN ('DOWNLOADING', 'STAGED', 'SWITCHED', 'PROBATION') THEN {updating}
            ELSE rd.state END,
        switched_at = CASE WHEN d.model_version = :version AND rd.switched_at IS NULL
                           AND COALESCE(d.update_state, '') <> 'ROLLED_BACK' THEN :now ELSE rd.switched_at END
    FROM devices d
    WHERE rd.device_id = d.id AND rd.rollout_id = :rollout AND rd.state IN ({assigned}, {updating}, {updated})
    """
)


def assign(session: Session, rollout: Rollout, bundle: Bundle, now: datetime) -> int:
    """Point every device of waves up to the current one at the bundle; returns how many were (re)assigned."""
    params = {"rollout": rollout.id, "wave": rollout.current_wave, "model": bundle.model, "now": now,
              "version": bundle.version}
    session.execute(_CAPTURE, params)
    count = session.execute(_MARK, params).rowcount  # type: ignore[attr-defined]
    session.execute(_FORWARD, params)
    return int(count)


def roll_back(session: Session, rollout: Rollout, bundle: Bundle) -> int:
    """Give every device the rollout touched its previous bundle back; returns how many."""
    params = {"rollout": rollout.id, "version": bundle.version, "model": bundle.model}
    session.execute(_BACK, params)
    return int(session.execute(_MARK_BACK, params).rowcount)  # type: ignore[attr-defined]


def observe(session: Session, rollout: Rollout, bundle: Bundle, now: datetime) -> None:
    """Fold the devices' latest heartbeats into their rollout state (updating, updated, failed)."""
    session.execute(_OBSERVE, {"rollout": rollout.id, "version": bundle.version, "now": now})


def release(session: Session, rollout: Rollout) -> None:
    """The rollout is over: its devices may join another one."""
    session.execute(text("UPDATE rollout_devices SET active = false WHERE rollout_id = :rollout"),
                    {"rollout": rollout.id})
