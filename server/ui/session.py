"""Dashboard sign-in: an operator token is exchanged for a signed, expiring, HttpOnly cookie with a CSRF secret.

The cookie names the token row and is signed with a key derived from that token's stored hash, so every
replica can check it without shared process state or a session table, and revoking the token ends its
sessions at once. Whoever holds the token could mint a cookie anyway, so this grants nothing new.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy import select
from sqlalchemy.orm import Session

from server.api.deps import SessionDep
from server.db.models import ApiToken, Role
from server.identity import OPERATOR_PREFIX, Operator, authenticate_operator, token_hash

COOKIE = "tinysphere_ui"
LOGIN_COOKIE = "tinysphere_ui_login"  # double-submit secret for the login form, which precedes any session
COOKIE_PATH = "/ui"
LIFETIME_S = 8 * 3600


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

    @property
    def may_act(self) -> bool:
        """True if the role may change things (start, pause, label), not only look."""
        return self.operator.may(Role.operator)


def _mac(key_hash: str, purpose: str, message: str) -> str:
    return hmac.new(key_hash.encode(), f"{purpose}\0{message}".encode(), hashlib.sha256).hexdigest()


def issue(token_id: int, key_hash: str, now: float, lifetime_s: int = LIFETIME_S) -> str:
    """A cookie value for token row `token_id` (whose stored hash is `key_hash`), valid for `lifetime_s`."""
    payload = f"{token_id}.{int(now) + lifetime_s}.{secrets.token_urlsafe(16)}"
    return f"{payload}.{_mac(key_hash, 'session', payload)}"


def read(session: Session, cookie: str, now: float) -> UiSession | None:
    """The session a cookie stands for, or None if it is forged, expired, or its token was revoked."""
    parts = cookie.split(".")
    if len(parts) != 4 or not parts[0].isdigit() or not parts[1].isdigit() or len(parts[0]) > 12:
        return None
    token_id, expires_at, nonce, mac = int(parts[0]), int(parts[1]), parts[2], parts[3]
    if expires_at <= now:
        return None
    row = session.execute(select(ApiToken.id, ApiToken.name, ApiToken.role, ApiToken.token_hash)
                          .where(ApiToken.id == token_id, ApiToken.revoked_at.is_(None))).first()
    if row is None or not hmac.compare_digest(mac, _mac(row.token_hash, "session", ".".join(parts[:3]))):
        return None
    return UiSession(Operator(row.id, row.name, Role(row.role)), _mac(row.token_hash, "csrf", nonce), expires_at)


def sign_in(session: Session, token: str) -> tuple[Operator, str] | None:
    """Check an operator token pasted into the login form; the operator and a fresh cookie, or None."""
    token = token.strip()
    if not token.startswith(OPERATOR_PREFIX) or len(token) > 256:
        return None
    operator = authenticate_operator(session, token)
    if operator is None:
        return None
    return operator, issue(operator.token_id, token_hash(token), time.time())


def login_csrf() -> str:
    """A random secret for the login form, sent both as a cookie and as a hidden field."""
    return secrets.token_urlsafe(24)


def same_secret(sent: object, expected: str) -> bool:
    """Constant-time comparison of a submitted secret with the expected one."""
    return isinstance(sent, str) and bool(expected) and hmac.compare_digest(sent.encode(), expected.encode())


def current(request: Request, session: SessionDep) -> UiSession:
    """The signed-in operator; sends the browser to the login page when there is none."""
    cookie = request.cookies.get(COOKIE)
    found = read(session, cookie, time.time()) if cookie else None
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
