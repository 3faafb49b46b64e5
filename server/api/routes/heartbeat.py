"""`POST /devices/{id}/heartbeat`: the device reports its state and gets its desired state back.

The hottest route, so it runs on the event loop: authentication, with the check of failed-attempt limits, is
folded into the heartbeat's single UPDATE on an async connection, and the answer is serialised once. The
lookups that tell 429, 401 and 403 apart run (on the thread pool, in a session) only when that UPDATE matched
nothing.

`FastPath` (ASGI middleware, inside the metrics, security-header and body-limit middleware) serves the heartbeats
that succeed without FastAPI's routing, request object and dependency solving, which cost a device's heartbeat as
much CPU as the UPDATE itself. Anything it does not answer goes on to the route, body replayed, and gets the
route's answer.
"""

from __future__ import annotations

import inspect
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated

from fastapi import APIRouter, Depends, FastAPI, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.routing import APIRoute
from fastapi.security.utils import get_authorization_scheme_param
from sqlalchemy.exc import SQLAlchemyError
from starlette.routing import compile_path
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from server import fleet
from server.api.deps import ClockDep, CredentialsDep, bearer_token, client_address, forbidden, get_clock, unauthorized
from server.api.errors import ProblemType
from server.api.openapi import problems
from server.backends import Backends
from server.identity import DEVICE_PREFIX, authenticate_device, authenticate_operator, token_hash
from server.ratelimit import CredentialLimits, Key, Kind
from server.schemas.devices import DesiredState, Heartbeat, HeartbeatResponse, PendingLabel

logger = logging.getLogger(__name__)
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
    answer = await _record(backends, device_id, token, body, limits, keys)
    if answer is not None:
        return Response(answer, media_type="application/json")
    await run_in_threadpool(_refuse, backends, token, limits, keys)
    raise AssertionError("unreachable: _refuse always raises")


async def _record(backends: Backends, device_id: str, token: str, body: Heartbeat, limits: CredentialLimits,
                  keys: tuple[Key, Key]) -> bytes | None:
    """The answer (JSON) to an accepted heartbeat, once recorded; None if `token` is no device secret, not this
    device's or blocked (nothing recorded then)."""
    if not token.startswith(DEVICE_PREFIX):
        return None
    report = body.model_dump(exclude={"acked_labels"})
    result = await fleet.heartbeat(backends.engine, device_id, token_hash(token), report, body.acked_labels,
                                   limits.blocked_params(keys))
    if result is None:
        return None
    desired, labels = result
    answer = HeartbeatResponse(desired=DesiredState(**desired), labels=[PendingLabel(**label) for label in labels])
    return answer.model_dump_json().encode()


def _refuse(backends: Backends, token: str, limits: CredentialLimits, keys: tuple[Key, Key]) -> None:
    """Raise why the heartbeat was refused: 429 while blocked, 403 for another known caller, else 401 (counted)."""
    with backends.sessions() as session:
        limits.check(session, keys)  # 429 while blocked, whether the secret was right or wrong
        if authenticate_device(session, token) or authenticate_operator(session, token):
            raise forbidden("a device may only send its own heartbeat")
        limits.failed(session, keys)
        session.commit()
        raise unauthorized()


class FastPath:
    """ASGI middleware answering the heartbeats the route would accept, with the route's answer.

    It takes a `POST` to the route's path with a JSON body (`application/json`) that `Heartbeat` accepts and a
    bearer device secret, and runs the route's own `_record` (the clock of the app's `get_clock`, overrides
    included). Everything else goes on to the app with the body replayed, so the route answers it as always:
    other requests, refusals (the UPDATE that matched nothing changed nothing; the route runs it again, then tells
    401, 403 and 429 apart and counts the failure), invalid input (422) and errors, which the route meets again
    and the app's handlers map. The request is labelled with the route (`scope["route"]`) as routing would.
    """

    def __init__(self, app: ASGIApp, api: FastAPI, path: str) -> None:
        self.app = app
        self.api = api
        self.route = _route(router)
        self.path = compile_path(path)[0]  # where `api` serves the route, compiled as routing compiles it

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "POST" or scope.get("root_path"):
            await self.app(scope, receive, send)
            return
        match = self.path.match(scope["path"])
        if match is None:
            await self.app(scope, receive, send)
            return
        received: list[Message] = []
        answer = None
        try:
            answer = await self._answer(scope, receive, received, match["device_id"])
        except (ValueError, SQLAlchemyError) as exc:  # invalid input, an outage: the route answers it as always
            logger.debug("heartbeat left to the route: %r", exc)
        except Exception:  # a fault of this path: logged, and the route still answers
            logger.exception("heartbeat fast path failed; the route answers")
        if answer is None:
            await self.app(scope, _replay(received, receive), send)
            return
        scope["route"] = self.route
        headers = [(b"content-length", str(len(answer)).encode()), (b"content-type", b"application/json")]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": answer})

    async def _answer(self, scope: Scope, receive: Receive, received: list[Message], device_id: str) -> bytes | None:
        """The route's answer if it is an accepted heartbeat (recorded then), else None; `received` gets every
        message read."""
        authorization = content_type = None
        for name, value in scope["headers"]:
            if name == b"authorization" and authorization is None:
                authorization = value.decode("latin-1")
            elif name == b"content-type" and content_type is None:
                content_type = value.decode("latin-1")
        if authorization is None or content_type is None:
            return None
        scheme, token = get_authorization_scheme_param(authorization)  # what `HTTPBearer` reads it with
        if scheme.lower() != "bearer" or not token.startswith(DEVICE_PREFIX):
            return None
        if content_type.partition(";")[0].strip().lower() != "application/json":
            return None
        chunks = []
        while True:
            message = await receive()
            received.append(message)
            if message["type"] != "http.request":
                return None
            chunks.append(message.get("body", b""))
            if not message.get("more_body", False):
                break
        body = Heartbeat.model_validate(json.loads(b"".join(chunks)))  # as FastAPI parses and validates it
        backends: Backends = self.api.state.backends
        limits = CredentialLimits.from_settings(backends.settings, await self._clock())
        client = scope.get("client")
        keys = limits.keys(Kind.bearer, client[0] if client else "unknown", token)
        return await _record(backends, device_id, token, body, limits, keys)

    async def _clock(self) -> Callable[[], float]:
        """What the app's `get_clock` dependency gives (tests override it)."""
        provider = self.api.dependency_overrides.get(get_clock, get_clock)
        if inspect.iscoroutinefunction(provider):
            clock: Callable[[], float] = await provider()
        else:
            clock = await run_in_threadpool(provider)
        return clock


def _route(source: APIRouter) -> APIRoute:
    """The heartbeat's route in `source`: what routing puts in `scope["route"]`."""
    return next(r for r in source.routes if isinstance(r, APIRoute) and r.endpoint is heartbeat)


def _replay(received: list[Message], receive: Receive) -> Receive:
    """A `receive` giving the messages already read, then the rest."""
    pending = list(received)

    async def replayed() -> Message:
        return pending.pop(0) if pending else await receive()

    return replayed


def install(app: FastAPI, prefix: str) -> None:
    """Serve accepted heartbeats through `FastPath` in `app`, which serves `router` under `prefix`; call before any
    other middleware is added, so the others wrap it."""
    app.add_middleware(FastPath, api=app, path=prefix + _route(router).path)
