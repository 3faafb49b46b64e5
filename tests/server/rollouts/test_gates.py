"""Gate arithmetic: a wave breaches below its minimum healthy fraction, never at it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from server.rollouts.gates import Observation, evaluate

NOW = datetime(2026, 12, 6, 12, 0, tzinfo=UTC)


def _devices(failed: int, total: int) -> list[Observation]:
    switched = NOW - timedelta(seconds=60)
    return [Observation(f"d{i}", "failed" if i < failed else "updated", switched, True, 0.0, 0.0, 10.0, 10.0)
            for i in range(total)]


@pytest.mark.parametrize(("failed", "total", "minimum", "decision"), [
    (1, 10, 0.9, "pass"),  # exactly 0.9 healthy: 1 - 0.9 is 0.09999999999999998 in floating point
    (2, 10, 0.9, "breach"),
    (3, 10, 0.7, "pass"),
    (1, 3, 0.67, "breach"),
    (0, 1, 1.0, "pass"),
    (1, 1, 1.0, "breach"),
])
def test_a_wave_breaches_below_its_minimum_healthy_fraction_only(failed: int, total: int, minimum: float,
                                                                  decision: str) -> None:
    verdict = evaluate({"min_healthy_fraction": minimum}, _devices(failed, total), 30, NOW, deadline_passed=True)
    assert verdict.decision == decision, verdict
