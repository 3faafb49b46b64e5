"""Typed dependencies: the backends, a database session, and who the caller is."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable
from typing import Annotated

from fastapi import Depends, HTTPException, Request, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.orm import Session

from server.backends import Backends
from server.config import Settings
from server.db.models import Role
from server.identity import (
    DEVICE_PREFIX,
    OPERATOR_PREFIX,
    DeviceCaller,
    Operator,
    authenticate_device,
    authenticate_operator,
)
from server.ratelimit import CredentialLimits, Kind

bearer = HTTPBearer(auto_error=False, description="An operator API token or a device secret")


# Dependencies that do no I/O are `async def`: sync ones would each cost a thread-pool hop.


async def get_backends(request: Request) -> Backends:
    """The backends the app was created with."""
    backends: Backends = request.app.state.backends
    return backends


BackendsDep = Annotated[Backends, Depends(get_backends)]


async def get_settings(backends: BackendsDep) -> Settings:
    """The process settings."""
    return backends.settings


SettingsDep = Annotated[Settings, Depends(get_settings)]


async def get_session(backends: BackendsDep) -> AsyncIterator[Session]:
    """A session per request; connections are taken lazily and returned on commit or rollback."""
    session = backends.sessions()
    try:
        yield session
    finally:
        session.close()  # no I/O unless a handler left a transaction open


SessionDep = Annotated[Session, Depends(get_session)]


async def get_clock() -> Callable[[], float]:
    """The wall clock (seconds since the epoch) for expiries and limits; tests override it to move time."""
    return time.time


ClockDep = Annotated[Callable[[], float], Depends(get_clock)]


async def client_address(request: Request) -> str:
    """The caller's address (uvicorn takes it from X-Forwarded-For when the peer is a trusted proxy)."""
    return request.client.host if request.client else "unknown"


AddressDep = Annotated[str, Depends(client_address)]


async def get_credential_limits(settings: SettingsDep, clock: ClockDep) -> CredentialLimits:
    """The limits on failed credential attempts."""
    return CredentialLimits.from_settings(settings, clock)


LimitsDep = Annotated[CredentialLimits, Depends(get_credential_limits)]
CredentialsDep = Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]


def unauthorized(detail: str = "missing or invalid token") -> HTTPException:
    """A 401 asking for a bearer token."""
    return HTTPException(status.HTTP_401_UNAUTHORIZED, detail, headers={"WWW-Authenticate": "Bearer"})


def forbidden(detail: str) -> HTTPException:
    """A 403: the caller is known but may not do this."""
    return HTTPException(status.HTTP_403_FORBIDDEN, detail)


async def bearer_token(credentials: CredentialsDep) -> str:
    """The raw bearer token; 401 when there is none."""
    if credentials is None or not credentials.credentials:
        raise unauthorized()
    return credentials.credentials


TokenDep = Annotated[str, Depends(bearer_token)]
_AUTHENTICATORS: dict[str, Callable[[Session, str], Operator | DeviceCaller | None]] = {
    OPERATOR_PREFIX: authenticate_operator, DEVICE_PREFIX: authenticate_device}


def get_caller(session: SessionDep, token: TokenDep, limits: LimitsDep, address: AddressDep,
               ) -> Operator | DeviceCaller:
    """The operator or device behind the bearer token; 401 if it is unknown, 429 while its keys are blocked.

    A token of no known kind is refused without a lookup and counts nothing."""
    authenticate = _AUTHENTICATORS.get(token[:len(OPERATOR_PREFIX)])
    if authenticate is None:
        raise unauthorized()
    keys = limits.keys(Kind.bearer, address, token)
    limits.check(session, keys)  # before the token is tried: a lockout must not tell right from wrong
    caller = authenticate(session, token)
    if caller is None:
        limits.failed(session, keys)
        session.commit()
        raise unauthorized()
    session.rollback()  # hand the connection back: handlers may stream for a long time before using it
    return caller


CallerDep = Annotated[Operator | DeviceCaller, Depends(get_caller)]


def require_role(role: Role) -> Callable[[Operator | DeviceCaller], Operator]:
    """A dependency admitting operators whose role includes `role`."""

    def check(caller: CallerDep) -> Operator:
        if not isinstance(caller, Operator):
            raise forbidden("operators only")
        if not caller.may(role):
            raise forbidden(f"needs role {role.value}")
        return caller

    return check


ViewerDep = Annotated[Operator, Depends(require_role(Role.viewer))]
OperatorDep = Annotated[Operator, Depends(require_role(Role.operator))]
AdminDep = Annotated[Operator, Depends(require_role(Role.admin))]


def get_device_caller(caller: CallerDep) -> DeviceCaller:
    """Admit devices only."""
    if not isinstance(caller, DeviceCaller):
        raise forbidden("devices only")
    return caller


DeviceDep = Annotated[DeviceCaller, Depends(get_device_caller)]


def device_or_viewer(device_id: str, caller: CallerDep) -> Operator | DeviceCaller:
    """Admit any operator, or the device named in the path itself."""
    if isinstance(caller, DeviceCaller) and caller.device_id != device_id:
        raise forbidden("a device may only touch its own resources")
    return caller


DeviceOrViewerDep = Annotated[Operator | DeviceCaller, Depends(device_or_viewer)]
