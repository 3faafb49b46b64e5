"""`POST /devices/{id}/heartbeat`: the device reports its state and gets its desired state back.

The hottest route, so it runs on the event loop: authentication, with the check of failed-attempt limits, is
folded into the heartbeat's single UPDATE on an async connection, and the answer is serialised once. The
lookups that tell 429, 401 and 403 apart run (on the thread pool, in a session) only when that UPDATE matched
nothing.
"""

from __future__ import annotations

from fastapi import APIRouter, Response
from fastapi.concurrency import run_in_threadpool

from server import fleet
from server.api.deps import AddressDep, BackendsDep, LimitsDep, TokenDep, forbidden, unauthorized
from server.api.errors import ProblemType
from server.api.openapi import problems
from server.backends import Backends
from server.identity import DEVICE_PREFIX, authenticate_device, authenticate_operator, token_hash
from server.ratelimit import CredentialLimits, Key, Kind
from server.schemas.devices import DesiredState, Heartbeat, HeartbeatResponse, PendingLabel

router = APIRouter(prefix="/devices", tags=["devices"])


@router.post("/{device_id}/heartbeat", response_model=HeartbeatResponse, responses=problems(ProblemType.forbidden))
async def heartbeat(device_id: str, body: Heartbeat, backends: BackendsDep, token: TokenDep, limits: LimitsDep,
                    address: AddressDep) -> Response:
    """Record the device's report, acknowledge delivered labels, return desired state and new labels."""
    keys = limits.keys(Kind.bearer, address, token)
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
