"""Who is calling: operator API tokens with roles, one-time enrollment tokens, device secrets.

Every credential is a 32-byte random token shown once and stored as its SHA-256; a salted slow hash
would add nothing for secrets of that entropy and would cost every heartbeat a key derivation.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from server.db.models import ApiToken, Device, DeviceStatus, EnrollmentToken, Role

OPERATOR_PREFIX = "tso_"
DEVICE_PREFIX = "tsd_"
ENROLLMENT_PREFIX = "tse_"
ROLE_RANK = {Role.viewer: 0, Role.operator: 1, Role.admin: 2}


@dataclass(frozen=True)
class Operator:
    """An authenticated operator token."""

    token_id: int
    name: str
    role: Role

    def may(self, needed: Role) -> bool:
        """True if this operator's role includes the rights of `needed`."""
        return ROLE_RANK[self.role] >= ROLE_RANK[needed]


@dataclass(frozen=True)
class DeviceCaller:
    """An authenticated device."""

    device_id: str


def new_token(prefix: str) -> str:
    """A fresh credential; the prefix tells operators, devices and enrollment tokens apart."""
    return prefix + secrets.token_urlsafe(32)


def token_hash(token: str) -> str:
    """The stored form of a credential."""
    return hashlib.sha256(token.encode()).hexdigest()


def create_api_token(session: Session, name: str, role: Role) -> str:
    """Store a new operator token and return it in clear text (the only time it is visible)."""
    token = new_token(OPERATOR_PREFIX)
    session.add(ApiToken(name=name, role=role.value, token_hash=token_hash(token)))
    session.flush()
    return token


def create_enrollment_token(session: Session, ttl: timedelta, tags: list[str] | None = None) -> str:
    """Store a one-time enrollment token valid for `ttl` and return it in clear text."""
    token = new_token(ENROLLMENT_PREFIX)
    expires = datetime.now(UTC) + ttl
    session.add(EnrollmentToken(token_hash=token_hash(token), expires_at=expires, tags=tags or []))
    session.flush()
    return token


def authenticate_operator(session: Session, token: str) -> Operator | None:
    """The operator behind `token`, or None when it is unknown or revoked."""
    row = session.execute(
        select(ApiToken.id, ApiToken.name, ApiToken.role).where(
            ApiToken.token_hash == token_hash(token), ApiToken.revoked_at.is_(None)
        )
    ).first()
    return Operator(row.id, row.name, Role(row.role)) if row else None


def authenticate_device(session: Session, secret: str) -> DeviceCaller | None:
    """The active device whose secret is `secret`, or None."""
    device_id = session.scalar(
        select(Device.id).where(
            Device.secret_hash == token_hash(secret), Device.status == DeviceStatus.active.value
        )
    )
    return DeviceCaller(device_id) if device_id else None


def enroll_device(
    session: Session, token: str, hardware: dict[str, object], name: str | None, attempt_key: str | None = None
) -> tuple[str, str] | None:
    """Spend a one-time enrollment token; `(device_id, device_secret)`, or None if it is not valid.

    A token already spent with the same `attempt_key` (the device never stored the first answer) gives
    the same device id again with a new secret, which invalidates the lost one; until the token expires."""
    now = datetime.now(UTC)
    device_id = "dev-" + secrets.token_hex(8)
    attempt = token_hash(attempt_key) if attempt_key else None
    claimed = session.execute(
        update(EnrollmentToken)
        .where(
            EnrollmentToken.token_hash == token_hash(token),
            EnrollmentToken.used_at.is_(None),
            EnrollmentToken.expires_at > now,
        )
        .values(used_at=now, device_id=device_id, attempt_hash=attempt)
        .returning(EnrollmentToken.tags)
    ).first()
    if claimed is None:
        return _repeat_enrollment(session, token, attempt, now)
    secret = new_token(DEVICE_PREFIX)
    session.add(
        Device(id=device_id, name=name, tags=list(claimed.tags), hardware=hardware, secret_hash=token_hash(secret))
    )
    session.flush()
    return device_id, secret


def _repeat_enrollment(session: Session, token: str, attempt: str | None, now: datetime) -> tuple[str, str] | None:
    if attempt is None:
        return None
    spent = session.scalars(select(EnrollmentToken).where(
        EnrollmentToken.token_hash == token_hash(token), EnrollmentToken.attempt_hash == attempt,
        EnrollmentToken.expires_at > now, EnrollmentToken.device_id.is_not(None))).first()
    device = session.get(Device, spent.device_id) if spent is not None else None
    if device is None or device.status != DeviceStatus.active.value:
        return None
    secret = new_token(DEVICE_PREFIX)
    device.secret_hash = token_hash(secret)
    session.flush()
    return device.id, secret
