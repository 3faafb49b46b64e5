"""The shared backoff: exponential steps capped at a maximum, jittered within bounds, at least a Retry-After."""

from __future__ import annotations

import random

import pytest
from tenacity import Retrying, stop_after_attempt

from device.backoff import FULL_JITTER, at_least_retry_after, next_delay, wait_jittered_exponential


def test_the_delay_doubles_up_to_its_cap_with_half_jitter() -> None:
    for failures, step in enumerate([1, 2, 4, 8, 10, 10], start=1):
        delays = [next_delay(failures, 1.0, 10.0) for _ in range(50)]
        assert all(step / 2 <= d <= step for d in delays)
        assert len(set(delays)) > 1  # jittered: a fleet failing together spreads out


def test_full_jitter_goes_down_to_zero() -> None:
    delays = [next_delay(3, 1.0, 10.0, floor=FULL_JITTER) for _ in range(200)]
    assert all(0 <= d <= 4 for d in delays) and min(delays) < 1


def test_many_failures_stay_at_the_cap() -> None:
    assert 900 <= next_delay(100_000, 5.0, 1800.0) <= 1800
    assert next_delay(0, 1.0, 10.0) <= 1  # before any failure: the first step


def test_a_seeded_rng_repeats_its_delays() -> None:
    first = [next_delay(n, 0.01, 0.08, rng=random.Random(3)) for n in range(1, 6)]
    assert first == [next_delay(n, 0.01, 0.08, rng=random.Random(3)) for n in range(1, 6)]


def test_retry_after_is_a_floor_but_the_cap_still_holds() -> None:
    assert all(7 <= next_delay(1, 0.01, 30.0, retry_after=7) <= 7.7 for _ in range(50))
    assert next_delay(1, 0.01, 5.0, retry_after=7) == 5
    assert at_least_retry_after(2.0, None, 1.0) == 1.0


def test_the_strategy_drives_a_tenacity_controller() -> None:
    slept: list[float] = []

    def down() -> None:
        raise OSError("down")

    controller = Retrying(wait=wait_jittered_exponential(1.0, 3.0), stop=stop_after_attempt(4), sleep=slept.append,
                          reraise=True)
    with pytest.raises(OSError):
        controller(down)
    assert len(slept) == 3 and all(step / 2 <= s <= step for s, step in zip(slept, [1, 2, 3], strict=True))


def test_the_jitter_floor_is_a_fraction() -> None:
    with pytest.raises(ValueError, match="jitter"):
        wait_jittered_exponential(1.0, 2.0, floor=1.5)
