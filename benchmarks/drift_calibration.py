"""Counting false alarms and calibrating a baseline to a false-alarm budget (stdlib only).

Shared by `benchmarks.drift` and `benchmarks.drift_alibi`, which runs in another environment.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from typing import Any

COOLDOWN = 100  # an alarm within this many frames of the last counted one is not counted, as a `Watch` does


def counted(alarms: Iterable[int], cooldown: int = COOLDOWN) -> list[int]:
    """The alarms a `Watch` with this cooldown would emit."""
    kept: list[int] = []
    for i in alarms:
        if not kept or i - kept[-1] > cooldown:
            kept.append(i)
    return kept


def calibrate(
    false_alarms: Callable[[float], int], sensitive: float, quiet: float, limit: int, steps: int = 8
) -> tuple[float, list[list[Any]]]:
    """The setting closest to `sensitive` (on a log scale) whose false alarms do not exceed `limit`.

    `false_alarms(value)` counts them (it may stop counting past `limit`); `quiet` is returned if even
    it raises more. Bisection assumes fewer alarms towards `quiet`; every trial is returned.
    """
    trials: list[list[Any]] = []

    def passes(value: float) -> bool:
        count = false_alarms(value)
        trials.append([float(f"{value:.6g}"), count])
        return count <= limit

    if not passes(quiet):
        return quiet, trials
    low, high = math.log(sensitive), math.log(quiet)  # `high` passes, `low` is not known to
    for _ in range(steps):
        middle = (low + high) / 2
        if passes(math.exp(middle)):
            high = middle
        else:
            low = middle
    return math.exp(high), trials  # not rounded: a rounded value may fall on the wrong side
