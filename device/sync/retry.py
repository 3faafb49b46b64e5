"""The retry policy of every device request: bounded attempts, exponential backoff with full jitter,
and at least the server's `Retry-After` when it sent one (429/503).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

from tenacity import AsyncRetrying, RetryCallState, retry_if_exception_type, stop_after_attempt, stop_after_delay
from tenacity.wait import wait_base

from device.backoff import FULL_JITTER, at_least_retry_after, wait_jittered_exponential
from device.errors import ServerUnavailableError


@dataclass(frozen=True)
class RetryPolicy:
    attempts: int = 5  # per request, then the sync round ends and the next one starts over
    initial_s: float = 1.0  # first backoff (scaled by a random factor: full jitter)
    max_wait_s: float = 60.0  # no single wait is longer, Retry-After included
    max_total_s: float = 300.0  # give up a request after this long in total

    def __post_init__(self) -> None:
        if self.attempts < 1 or self.initial_s < 0 or self.max_wait_s < 0 or self.max_total_s <= 0:
            raise ValueError("retry: attempts >= 1, initial_s/max_wait_s >= 0, max_total_s > 0 required")


class wait_retry_after(wait_base):  # noqa: N801 - tenacity names its strategies this way
    """Exponential backoff with jitter, but never shorter than the server's Retry-After (capped)."""

    def __init__(self, initial_s: float, max_wait_s: float) -> None:
        self.backoff = wait_jittered_exponential(initial_s, max_wait_s, floor=FULL_JITTER)
        self.max_wait_s = max_wait_s

    def __call__(self, retry_state: RetryCallState) -> float:
        exc = retry_state.outcome.exception() if retry_state.outcome else None
        return at_least_retry_after(self.backoff(retry_state), getattr(exc, "retry_after", None), self.max_wait_s)


def retrying(policy: RetryPolicy) -> AsyncRetrying:
    """An async tenacity controller retrying `ServerUnavailableError` only, re-raising the last one."""
    return AsyncRetrying(
        retry=retry_if_exception_type(ServerUnavailableError),
        wait=wait_retry_after(policy.initial_s, policy.max_wait_s),
        stop=stop_after_attempt(policy.attempts) | stop_after_delay(policy.max_total_s),
        reraise=True,
    )


def parse_retry_after(value: str | None) -> float | None:
    """Seconds from a Retry-After header (delta-seconds or HTTP-date); None when absent or unreadable."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, (when - datetime.now(UTC)).total_seconds()) if when.tzinfo else None
