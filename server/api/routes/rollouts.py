"""`/rollouts`: create a health-gated rollout, follow it per wave and device, pause, resume, abort."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, status
from sqlalchemy import func, select

from server.api.deps import OperatorDep, SessionDep, ViewerDep
from server.api.errors import ProblemType
from server.api.idempotency import NO_KEY, IdempotencyDep
from server.api.openapi import problems
from server.api.pagination import PageDep
from server.api.schemas import Page
from server.api.schemas.rollouts import (
    RolloutCreate,
    RolloutDeviceOut,
    RolloutEventOut,
    RolloutOut,
    WaveStatus,
)
from server.db.models import Rollout
from server.rollouts import lifecycle
from server.rollouts import status as rollout_status

router = APIRouter(prefix="/rollouts", tags=["rollouts"])
Refusable = problems(ProblemType.conflict)  # a transition the rollout's state does not allow


def _out(session: SessionDep, rollout_id: int) -> RolloutOut:
    rollout, bundle = rollout_status.get(session, rollout_id)
    waves = [WaveStatus(**wave) for wave in rollout_status.waves(session, rollout)]
    return RolloutOut(id=rollout.id, model=bundle.model, bundle_version=bundle.version, target=bundle.target_path,
                      state=rollout.state, rolled_back=rollout.rolled_back, current_wave=rollout.current_wave,
                      wave_started_at=rollout.wave_started_at, selector=rollout.selector, gates=rollout.gates,
                      wave_timeout_s=rollout.wave_timeout_s, created_by=rollout.created_by,
                      created_at=rollout.created_at, updated_at=rollout.updated_at, waves=waves)


@router.post("", status_code=status.HTTP_201_CREATED,
             responses=problems(ProblemType.not_found, ProblemType.conflict))
def create(body: RolloutCreate, session: SessionDep, operator: OperatorDep,
           once: IdempotencyDep = NO_KEY) -> RolloutOut:
    """Plan a rollout of a published bundle; the controller assigns wave 1 on its next tick.

    With an `Idempotency-Key`, a retry of the same plan answers what the first request did and plans nothing."""
    claim = once.claim(operator, "POST /rollouts", body)
    if (earlier := claim.replay(RolloutOut)) is not None:
        return earlier
    spec = body.model_dump(mode="json")
    spec["selector"] = body.selector.model_dump(exclude_none=True, exclude_defaults=True) or {"fleet": True}
    rollout = lifecycle.create(session, spec, operator.name)
    created = claim.keep(_out(session, rollout.id))
    session.commit()
    return created


@router.get("")
def list_rollouts(session: SessionDep, _: ViewerDep, page: PageDep,
                  state: Annotated[str | None, Query(max_length=16)] = None) -> Page[RolloutOut]:
    """Rollouts, newest first."""
    query = select(Rollout.id)
    if state is not None:
        query = query.where(Rollout.state == state)
    count = session.scalar(select(func.count()).select_from(query.subquery())) or 0
    ids = session.scalars(query.order_by(Rollout.id.desc()).limit(page.limit).offset(page.offset))
    return page.page([_out(session, rollout_id) for rollout_id in ids], count)


@router.get("/{rollout_id}")
def get_rollout(rollout_id: int, session: SessionDep, _: ViewerDep) -> RolloutOut:
    """A rollout with its waves counted by device state."""
    return _out(session, rollout_id)


@router.get("/{rollout_id}/devices")
def rollout_devices(rollout_id: int, session: SessionDep, _: ViewerDep,
                    page: PageDep) -> Page[RolloutDeviceOut]:
    """The devices of the rollout by wave: state, what each ran before, its latest report."""
    rollout_status.get(session, rollout_id)
    return page.cut([RolloutDeviceOut(**row) for row in rollout_status.devices(session, rollout_id)])


@router.get("/{rollout_id}/events")
def rollout_events(rollout_id: int, session: SessionDep, _: ViewerDep,
                   page: PageDep) -> Page[RolloutEventOut]:
    """The decisions with their reasons and figures, oldest first."""
    rollout_status.get(session, rollout_id)
    return page.cut([RolloutEventOut.model_validate(e) for e in rollout_status.events(session, rollout_id)])


@router.post("/{rollout_id}/pause", responses=Refusable)
def pause(rollout_id: int, session: SessionDep, operator: OperatorDep) -> RolloutOut:
    """Stop advancing (devices keep their assignment)."""
    lifecycle.pause(session, rollout_id, operator.name)
    session.commit()
    return _out(session, rollout_id)


@router.post("/{rollout_id}/resume", responses=Refusable)
def resume(rollout_id: int, session: SessionDep, operator: OperatorDep) -> RolloutOut:
    """Continue (after an automatic rollback the current wave starts over)."""
    lifecycle.resume(session, rollout_id, operator.name)
    session.commit()
    return _out(session, rollout_id)


@router.post("/{rollout_id}/abort", responses=Refusable)
def abort(rollout_id: int, session: SessionDep, operator: OperatorDep) -> RolloutOut:
    """End the rollout and send its devices back to their previous bundle."""
    lifecycle.abort(session, rollout_id, operator.name)
    session.commit()
    return _out(session, rollout_id)
