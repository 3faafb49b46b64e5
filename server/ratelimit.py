"""Limits on failed credential attempts, counted in PostgreSQL so that every API replica sees the same count.

Fixed windows per key: the first failure under a key opens a window of `window_s`; the failure that reaches the
key's limit blocks the key until that window ends, and the first failure after it opens a new window. A blocked
key is refused before its credential is tried, right or wrong, so a lockout is no guessing oracle. Only failures
write; a check is one primary-key read. (`limits` on PyPI has no PostgreSQL storage, and pyrate-limiter's creates
a table per key at run time and refuses requests under lock contention: one upsert per key is all this needs.)
"""

from __future__ import annotations

import enum
import functools
import hashlib
import ipaddress
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import delete, select, text
from sqlalchemy.orm import Session

from server.config import Settings
from server.db.models import CredentialFailure
from server.errors import TooManyAttemptsError

logger = logging.getLogger(__name__)
PREFIX_CHARS = 12  # a credential's kind ("tso_") and its first 8 random characters (48 bits)
PRUNE_BATCH = 100  # expired keys deleted with each failure, so the table holds about the live ones

# Atomic across replicas: the row lock of the upsert orders concurrent failures under one key.
_COUNT = text(
    """
    INSERT INTO credential_failures AS f (key, window_start, failures, blocked_until)
    VALUES (:key, :now, 1, CASE WHEN :limit <= 1 THEN :ends END)
    ON CONFLICT (key) DO UPDATE SET
        window_start = CASE WHEN f.window_start <= :opened_before THEN :now ELSE f.window_start END,
        failures = CASE WHEN f.window_start <= :opened_before THEN 1 ELSE f.failures + 1 END,
        blocked_until = CASE
            WHEN f.window_start <= :opened_before THEN CASE WHEN :limit <= 1 THEN :ends END
            WHEN f.failures + 1 >= :limit THEN f.window_start + :window
        END
    RETURNING failures, blocked_until
    """
)
# True while either key of an attempt is blocked, for statements that fold the check into their own WHERE (the
# heartbeat authenticates in its one UPDATE); `CredentialLimits.blocked_params` binds it.
BLOCKED_SQL = ("EXISTS (SELECT 1 FROM credential_failures WHERE key IN (:blocked_address, :blocked_credential) "
               "AND blocked_until > :blocked_at)")
# Plain SQL: it runs before every credential is tried, and a built statement costs twice the CPU of this one.
_BLOCKED_UNTIL = text("SELECT max(blocked_until) FROM credential_failures "
                      "WHERE key IN (:blocked_address, :blocked_credential) AND blocked_until > :blocked_at")


class Kind(enum.StrEnum):
    """What a credential was presented for; each kind counts its own failures per address."""

    login = "login"  # the dashboard's sign-in form
    enrollment = "enrollment"
    bearer = "bearer"  # operator tokens and device secrets on the API


@dataclass(frozen=True)
class Key:
    """One counter: its name in `credential_failures` and the failures it allows per window."""

    name: str
    limit: int


@functools.lru_cache(maxsize=4096)
def client_network(address: str) -> str:
    """What an address counts under: an IPv4 address itself, an IPv6 address its /64 (one site's usual share).

    Cached: every authenticated request asks, from the same few addresses (a fleet behind its gateways)."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return address[:64]
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.IPv6Network((ip, 64), strict=False))
    return str(ip)


@dataclass(frozen=True)
class CredentialLimits:
    """Counts failed credential attempts per key and refuses a key that reached its limit."""

    window_s: int = 300
    per_address: int = 30
    per_credential: int = 10
    clock: Callable[[], float] = field(default=time.time, compare=False)

    def __post_init__(self) -> None:
        if min(self.window_s, self.per_address, self.per_credential) < 1:
            raise ValueError("window_s, per_address and per_credential must be at least 1")

    @classmethod
    def from_settings(cls, settings: Settings, clock: Callable[[], float] = time.time) -> CredentialLimits:
        """The limits `settings` configure, on `clock` (seconds since the epoch)."""
        return cls(settings.auth_failure_window_s, settings.auth_failures_per_address,
                   settings.auth_failures_per_credential, clock)

    def keys(self, kind: Kind, address: str, credential: str) -> tuple[Key, Key]:
        """The counters an attempt with `credential` from `address` falls under.

        The credential key holds a hash of its prefix, never the secret: it slows down whoever knows part of a
        credential, from any address, while a lockout of a prefix leaves every other credential alone."""
        prefix = hashlib.sha256(credential[:PREFIX_CHARS].encode()).hexdigest()[:32]
        return (Key(f"{kind.value}:{client_network(address)}", self.per_address),
                Key(f"credential:{prefix}", self.per_credential))

    def check(self, session: Session, keys: tuple[Key, Key]) -> None:
        """Raise `TooManyAttemptsError` if either of `keys` (address, credential) is blocked now."""
        params = self.blocked_params(keys)
        blocked = session.execute(_BLOCKED_UNTIL, params).scalar()
        if blocked is not None:
            now = params["blocked_at"]
            wait = max(1, math.ceil((blocked - now).total_seconds()))
            raise TooManyAttemptsError(f"too many failed attempts from this address or with this credential; "
                                       f"try again in {wait} s", wait)

    def blocked_params(self, keys: tuple[Key, Key]) -> dict[str, Any]:
        """The parameters of `BLOCKED_SQL` for an attempt under `keys`, now."""
        return {"blocked_address": keys[0].name, "blocked_credential": keys[1].name, "blocked_at": self._now()}

    def failed(self, session: Session, keys: tuple[Key, Key]) -> None:
        """Count one failed attempt under each of `keys` (the caller commits)."""
        now = self._now()
        window = timedelta(seconds=self.window_s)
        for key in keys:
            row = session.execute(_COUNT, {"key": key.name, "now": now, "limit": key.limit, "window": window,
                                           "ends": now + window, "opened_before": now - window}).one()
            if row.failures == key.limit:
                logger.warning("%s: %d failed credential attempts, refused until %s", key.name, row.failures,
                               row.blocked_until)
        expired = select(CredentialFailure.key).where(CredentialFailure.window_start <= now - window)
        session.execute(delete(CredentialFailure).where(CredentialFailure.key.in_(expired.limit(PRUNE_BATCH))))

    def _now(self) -> datetime:
        return datetime.fromtimestamp(self.clock(), UTC)
