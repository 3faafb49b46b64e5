"""The rollout use cases the JSON API and the dashboard share: plan, list, read, and pause, resume or abort.

Each answers the API's response bodies; the API adds authentication and idempotency around them.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from server.db.models import Rollout
from server.pagination import Paging
from server.rollouts import lifecycle, status
from server.rollouts.states import RolloutState
from server.schemas import Page
from server.schemas.rollouts import RolloutCreate, RolloutDeviceOut, RolloutEventOut, RolloutOut, WaveStatus

Action = Literal["pause", "resume", "abort"]
# What each operator action does, and the state it moves the rollout to.
ACTIONS: dict[Action, tuple[Callable[[Session, int, str], Rollout], RolloutState]] = {
    "pause": (lifecycle.pause, RolloutState.paused),
    "resume": (lifecycle.resume, RolloutState.running),
    "abort": (lifecycle.abort, RolloutState.aborted),
}


def rollout(session: Session, rollout_id: int) -> RolloutOut:
    """A rollout with its waves counted by device state."""
    found, bundle = status.get(session, rollout_id)
    waves = [WaveStatus(**wave) for wave in status.waves(session, found)]
    return RolloutOut(id=found.id, model=bundle.model, bundle_version=bundle.version, target=bundle.target_path,
                      state=found.state, rolled_back=found.rolled_back, current_wave=found.current_wave,
                      wave_started_at=found.wave_started_at, selector=found.selector, gates=found.gates,
                      wave_timeout_s=found.wave_timeout_s, created_by=found.created_by,
                      created_at=found.created_at, updated_at=found.updated_at, waves=waves)


def plan(session: Session, body: RolloutCreate, created_by: str) -> RolloutOut:
    """Plan a rollout of a published bundle (the caller commits); the controller assigns wave 1 on its next tick."""
    spec = body.model_dump(mode="json")
    spec["selector"] = body.selector.model_dump(exclude_none=True, exclude_defaults=True) or {"fleet": True}
    planned = lifecycle.create(session, spec, created_by)
    return rollout(session, planned.id)


def rollouts(session: Session, page: Paging, state: str | None = None) -> Page[RolloutOut]:
    """Rollouts, newest first, only those in `state` if given."""
    query = select(Rollout.id)
    if state is not None:
        query = query.where(Rollout.state == state)
    count = session.scalar(select(func.count()).select_from(query.subquery())) or 0
    ids = session.scalars(query.order_by(Rollout.id.desc()).limit(page.limit).offset(page.offset))
    return page.page([rollout(session, rollout_id) for rollout_id in ids], count)


def devices(session: Session, rollout_id: int, page: Paging) -> Page[RolloutDeviceOut]:
    """The devices of a rollout by wave: state, what each ran before, its latest report."""
    status.get(session, rollout_id)
    return page.cut([RolloutDeviceOut(**row) for row in status.devices(session, rollout_id)])


def events(session: Session, rollout_id: int, page: Paging) -> Page[RolloutEventOut]:
    """The decisions with their reasons and figures, oldest first."""
    status.get(session, rollout_id)
    return page.cut([RolloutEventOut.model_validate(e) for e in status.events(session, rollout_id)])


def control(session: Session, rollout_id: int, action: Action, by: str) -> RolloutOut:
    """Pause, resume or abort a rollout and commit; a `ConflictError` if its state does not allow it."""
    ACTIONS[action][0](session, rollout_id, by)
    session.commit()
    return rollout(session, rollout_id)
