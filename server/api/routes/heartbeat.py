"""`POST /devices/{id}/heartbeat`: the device reports its state and gets its desired state back.

The hottest route, so it runs on the event loop: authentication, with the check of failed-attempt limits, is
folded into the heartbeat's single UPDATE on an async connection, and the answer is serialised once. The
lookups that tell 429, 401 and 403 apart run (on the thread pool, in a session) only when that UPDATE matched
nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import APIRouter, Depends, Request, Response
from fastapi.concurrency import run_in_threadpool

from server import fleet
from server.api.deps import ClockDep, CredentialsDep, bearer_token, client_address, forbidden, unauthorized
from server.api.errors import ProblemType
from server.api.openapi import problems
from server.backends import Backends
from server.identity import DEVICE_PREFIX, authenticate_device, authenticate_operator, token_hash
from server.ratelimit import CredentialLimits, Key, Kind
from server.schemas.devices import DesiredState, Heartbeat, HeartbeatResponse, PendingLabel

router = APIRouter(prefix="/devices", tags=["devices"])


@dataclass(frozen=True)
class _Attempt:
    """Who knocks: the backends, the bearer token, the limits it falls under and the caller's address."""

    backends: Backends
    token: str
    limits: CredentialLimits
    address: str


async def _attempt(request: Request, credentials: CredentialsDep, clock: ClockDep) -> _Attempt:
    """What `deps` gives as five dependencies, in one: FastAPI solves each dependency on every request."""
    token = await bearer_token(credentials)
    backends: Backends = request.app.state.backends
    return _Attempt(backends, token, CredentialLimits.from_settings(backends.settings, clock),
                    await client_address(request))


@router.post("/{device_id}/heartbeat", response_model=HeartbeatResponse, responses=problems(ProblemType.forbidden))
async def heartbeat(device_id: str, body: Heartbeat, attempt: Annotated[_Attempt, Depends(_attempt)]) -> Response:
    """Record the device's report, acknowledge delivered labels, return desired state and new labels."""
    backends, token, limits = attempt.backends, attempt.token, attempt.limits
    keys = limits.keys(Kind.bearer, attempt.address, token)
    if token.startswith(DEVICE_PREFIX):
        report = body.model_dump(exclude={"acked_labels"})
        result = await fleet.heartbeat(backends.engine, device_id, token_hash(token), report, body.acked_labels,
                                       limits.blocked_params(keys))
        if result is not None:
            desired, labels = result
            answer = HeartbeatResponse(desired=DesiredState(**desired),
                                       labels=[PendingLabel(**label) for label in labels])
            return Response(answer.model_dump_json(), media_type="application/json")
    await run_in_threadpool(_refuse, backends, token, limits, keys)
    raise AssertionError("unreachable: _refuse always raises")


def _refuse(backends: Backends, token: str, limits: CredentialLimits, keys: tuple[Key, Key]) -> None:
    """Raise why the heartbeat was refused: 429 while blocked, 403 for another known caller, else 401 (counted)."""
    with backends.sessions() as session:
        limits.check(session, keys)  # 429 while blocked, whether the secret was right or wrong
        if authenticate_device(session, token) or authenticate_operator(session, token):
            raise forbidden("a device may only send its own heartbeat")
        limits.failed(session, keys)
        session.commit()
        raise unauthorized()
