"""`/rollouts`: create a health-gated rollout, follow it per wave and device, pause, resume, abort."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, status

from server.api.deps import OperatorDep, SessionDep, ViewerDep
from server.api.errors import ProblemType
from server.api.idempotency import IdempotencyDep
from server.api.openapi import problems
from server.pagination import PageDep
from server.rollouts import service
from server.schemas import Page
from server.schemas.rollouts import RolloutCreate, RolloutDeviceOut, RolloutEventOut, RolloutOut

router = APIRouter(prefix="/rollouts", tags=["rollouts"])
Refusable = problems(ProblemType.conflict)  # a transition the rollout's state does not allow


@router.post("", status_code=status.HTTP_201_CREATED,
             responses=problems(ProblemType.not_found, ProblemType.conflict))
def create(body: RolloutCreate, session: SessionDep, operator: OperatorDep,
           once: IdempotencyDep) -> RolloutOut:
    """Plan a rollout of a published bundle; the controller assigns wave 1 on its next tick.

    With an `Idempotency-Key`, a retry of the same plan answers what the first request did and plans nothing."""
    claim = once.claim(operator, "POST /rollouts", body)
    if (earlier := claim.replay(RolloutOut)) is not None:
        return earlier
    created = claim.keep(service.plan(session, body, operator.name))
    session.commit()
    return created


@router.get("")
def list_rollouts(session: SessionDep, _: ViewerDep, page: PageDep,
                  state: Annotated[str | None, Query(max_length=16)] = None) -> Page[RolloutOut]:
    """Rollouts, newest first."""
    return service.rollouts(session, page, state)


@router.get("/{rollout_id}")
def get_rollout(rollout_id: int, session: SessionDep, _: ViewerDep) -> RolloutOut:
    """A rollout with its waves counted by device state."""
    return service.rollout(session, rollout_id)


@router.get("/{rollout_id}/devices")
def rollout_devices(rollout_id: int, session: SessionDep, _: ViewerDep,
                    page: PageDep) -> Page[RolloutDeviceOut]:
    """The devices of the rollout by wave: state, what each ran before, its latest report."""
    return service.devices(session, rollout_id, page)


@router.get("/{rollout_id}/events")
def rollout_events(rollout_id: int, session: SessionDep, _: ViewerDep,
                   page: PageDep) -> Page[RolloutEventOut]:
    """The decisions with their reasons and figures, oldest first."""
    return service.events(session, rollout_id, page)


@router.post("/{rollout_id}/pause", responses=Refusable)
def pause(rollout_id: int, session: SessionDep, operator: OperatorDep) -> RolloutOut:
    """Stop advancing (devices keep their assignment)."""
    return service.control(session, rollout_id, "pause", operator.name)


@router.post("/{rollout_id}/resume", responses=Refusable)
def resume(rollout_id: int, session: SessionDep, operator: OperatorDep) -> RolloutOut:
    """Continue (after an automatic rollback the current wave starts over)."""
    return service.control(session, rollout_id, "resume", operator.name)


@router.post("/{rollout_id}/abort", responses=Refusable)
def abort(rollout_id: int, session: SessionDep, operator: OperatorDep) -> RolloutOut:
    """End the rollout and send its devices back to their previous bundle."""
    return service.control(session, rollout_id, "abort", operator.name)
