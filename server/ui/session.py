"""Dashboard sign-in: an operator token is exchanged for an expiring, HttpOnly session cookie with a CSRF secret.

The cookie holds a random secret; PostgreSQL holds its SHA-256 in `ui_sessions`, so every replica checks the same
row with one indexed read, signing out revokes it at once (a copied cookie stops working), and revoking the token
ends all of its sessions.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session

from server.api.deps import ClockDep, SessionDep
from server.db.models import ApiToken, DashboardSession, Role
from server.identity import OPERATOR_PREFIX, Operator, authenticate_operator, token_hash

COOKIE = "tinysphere_ui"
LOGIN_COOKIE = "tinysphere_ui_login"  # double-submit secret for the login form, which precedes any session
COOKIE_PATH = "/ui"
LIFETIME_S = 8 * 3600
_SECRET_CHARS = (43, 64)  # what `issue` makes is 43 characters; anything far off is not worth a lookup


class LoginRequired(Exception):
    """No valid session: the browser goes to the login page (`next` is where it wanted to be)."""

    def __init__(self, next_path: str) -> None:
        self.next_path = next_path
        super().__init__(next_path)


class Refused(Exception):
    """The signed-in operator may not do this; `reason` is shown to them."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(reason)


@dataclass(frozen=True)
class UiSession:
    """A signed-in operator and the CSRF token their forms must carry."""

    operator: Operator
    csrf: str
    expires_at: int
    session_id: int

    @property
    def may_act(self) -> bool:
        """True if the role may change things (start, pause, label), not only look."""
        return self.operator.may(Role.operator)


def _at(now: float) -> datetime:
    return datetime.fromtimestamp(now, UTC)


def _csrf(secret: str) -> str:
    # Derived from the cookie's secret: a page shows it, but it does not give the cookie away.
    return hmac.new(secret.encode(), b"csrf", hashlib.sha256).hexdigest()


def issue(session: Session, token_id: int, now: float, lifetime_s: int = LIFETIME_S) -> str:
    """Store a new session of token row `token_id`, valid for `lifetime_s`; its cookie value (the only copy)."""
    secret = secrets.token_urlsafe(32)
    session.execute(delete(DashboardSession).where(DashboardSession.expires_at <= _at(now)))  # sign-ins are rare
    session.add(DashboardSession(token_id=token_id, secret_hash=token_hash(secret), created_at=_at(now),
                                 expires_at=_at(now) + timedelta(seconds=lifetime_s)))
    session.flush()
    return secret


def read(session: Session, cookie: str, now: float) -> UiSession | None:
    """The session a cookie stands for, or None if it is unknown, expired, signed out, or its token revoked."""
    if not _SECRET_CHARS[0] <= len(cookie) <= _SECRET_CHARS[1]:
        return None
    row = session.execute(
        select(DashboardSession.id, DashboardSession.expires_at, ApiToken.id.label("token_id"), ApiToken.name,
               ApiToken.role)
        .join(ApiToken, ApiToken.id == DashboardSession.token_id)
        .where(DashboardSession.secret_hash == token_hash(cookie), DashboardSession.revoked_at.is_(None),
               DashboardSession.expires_at > _at(now), ApiToken.revoked_at.is_(None))).first()
    if row is None:
        return None
    return UiSession(Operator(row.token_id, row.name, Role(row.role)), _csrf(cookie),
                     int(row.expires_at.timestamp()), row.id)


def end(session: Session, session_id: int, now: float) -> None:
    """Sign a session out: its cookie is refused from now on, by every replica (the caller commits)."""
    session.execute(update(DashboardSession).where(DashboardSession.id == session_id,
                                                   DashboardSession.revoked_at.is_(None))
                    .values(revoked_at=_at(now)))


def sign_in(session: Session, token: str, now: float) -> tuple[Operator, str] | None:
    """Check an operator token pasted into the login form; the operator and a new session's cookie, or None."""
    token = token.strip()
    if not token.startswith(OPERATOR_PREFIX) or len(token) > 256:
        return None
    operator = authenticate_operator(session, token)
    if operator is None:
        return None
    return operator, issue(session, operator.token_id, now)


def login_csrf() -> str:
    """A random secret for the login form, sent both as a cookie and as a hidden field."""
    return secrets.token_urlsafe(24)


def same_secret(sent: object, expected: str) -> bool:
    """Constant-time comparison of a submitted secret with the expected one."""
    return isinstance(sent, str) and bool(expected) and hmac.compare_digest(sent.encode(), expected.encode())


def current(request: Request, session: SessionDep, clock: ClockDep) -> UiSession:
    """The signed-in operator; sends the browser to the login page when there is none."""
    cookie = request.cookies.get(COOKIE)
    found = read(session, cookie, clock()) if cookie else None
    session.rollback()  # hand the connection back before the page does its own queries
    if found is None:
        raise LoginRequired(request.url.path)
    return found


UiSessionDep = Annotated[UiSession, Depends(current)]


async def acting(request: Request, ui: UiSessionDep) -> UiSession:
    """A state-changing form: its CSRF token must match the session, and the role must allow changes."""
    form = await request.form()
    if not same_secret(form.get("csrf"), ui.csrf):
        raise Refused("This form did not come from your current dashboard session (CSRF check failed). "
                      "Reload the page and try again.")
    if not ui.may_act:
        raise Refused(f"You are signed in as {ui.operator.name} with the {ui.operator.role.value} role, which may "
                      "look at the fleet but not change it. Ask an admin for an operator token.")
    return ui


ActingDep = Annotated[UiSession, Depends(acting)]
