"""`POST /devices/{id}/heartbeat`: the device reports its state and gets its desired state back.

Authentication, with the check of failed-attempt limits, is folded into the heartbeat's single UPDATE; the
lookups that tell 429, 401 and 403 apart run only when that UPDATE matched nothing.
"""

from __future__ import annotations

from fastapi import APIRouter

from server import fleet
from server.api.deps import AddressDep, LimitsDep, SessionDep, TokenDep, forbidden, unauthorized
from server.api.errors import ProblemType
from server.api.openapi import problems
from server.identity import DEVICE_PREFIX, authenticate_device, authenticate_operator, token_hash
from server.ratelimit import Kind
from server.schemas.devices import DesiredState, Heartbeat, HeartbeatResponse, PendingLabel

router = APIRouter(prefix="/devices", tags=["devices"])


@router.post("/{device_id}/heartbeat", responses=problems(ProblemType.forbidden))
def heartbeat(device_id: str, body: Heartbeat, session: SessionDep, token: TokenDep, limits: LimitsDep,
              address: AddressDep) -> HeartbeatResponse:
    """Record the device's report, acknowledge delivered labels, return desired state and new labels."""
    report = body.model_dump(exclude={"acked_labels"})
    keys = limits.keys(Kind.bearer, address, token)
    result = None
    if token.startswith(DEVICE_PREFIX):
        result = fleet.heartbeat(session, device_id, token_hash(token), report, body.acked_labels,
                                 limits.blocked_params(keys))
    if result is None:
        session.rollback()
        limits.check(session, keys)  # 429 while blocked, whether the secret was right or wrong
        if authenticate_device(session, token) or authenticate_operator(session, token):
            raise forbidden("a device may only send its own heartbeat")
        limits.failed(session, keys)
        session.commit()
        raise unauthorized()
    session.commit()
    desired, labels = result
    return HeartbeatResponse(
        desired=DesiredState(**desired), labels=[PendingLabel(**label) for label in labels]
    )
