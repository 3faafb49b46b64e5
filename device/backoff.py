"""Exponential backoff with jitter for every retry loop of the device, on tenacity's wait strategies.

`wait_jittered_exponential` is the tenacity strategy (for `Retrying`/`AsyncRetrying` controllers: the sync client);
`next_delay(failures, ...)` is the same wait for the loops that schedule their own next attempt (provisioning, the
updater's state machine, the TUF fetcher); `at_least_retry_after` honours a server's Retry-After in both.
"""

from __future__ import annotations

import random
from typing import Protocol

from tenacity import RetryCallState, Retrying
from tenacity.wait import wait_exponential

HALF_JITTER = 0.5  # the wait is between half and all of the exponential step
FULL_JITTER = 0.0  # the wait is anywhere between 0 and the step


class Uniform(Protocol):
    """A source of jitter: the `random` module or a seeded `random.Random`."""

    def uniform(self, a: float, b: float) -> float: ...


class wait_jittered_exponential(wait_exponential):  # noqa: N801 - tenacity names its strategies this way
    """`initial_s * 2**(attempt - 1)`, capped at `max_s`, scaled by a random factor in [`floor`, 1]."""

    def __init__(self, initial_s: float, max_s: float, floor: float = HALF_JITTER, rng: Uniform = random) -> None:
        if not 0 <= floor <= 1:
            raise ValueError(f"backoff: jitter floor must be in [0, 1], got {floor}")
        super().__init__(multiplier=initial_s, max=max_s)
        self.floor = floor
        self.rng = rng

    def __call__(self, retry_state: RetryCallState) -> float:
        return super().__call__(retry_state) * self.rng.uniform(self.floor, 1.0)


def at_least_retry_after(wait: float, retry_after: float | None, max_s: float, rng: Uniform = random) -> float:
    """`wait`, but no shorter than the server's Retry-After (spread by up to 10 %), and never past `max_s`."""
    if retry_after is not None:
        wait = max(wait, retry_after * rng.uniform(1.0, 1.1))  # spread a fleet told the same delay
    return min(wait, max_s)


def next_delay(failures: int, initial_s: float, max_s: float, *, floor: float = HALF_JITTER,
               retry_after: float | None = None, rng: Uniform = random) -> float:
    """How long to wait after `failures` failures in a row (1 for the first), as `wait_jittered_exponential`."""
    state = RetryCallState(Retrying(), None, (), {})
    state.attempt_number = max(1, failures)
    wait = wait_jittered_exponential(initial_s, max_s, floor, rng)(state)
    return wait if retry_after is None else at_least_retry_after(wait, retry_after, max_s, rng)
