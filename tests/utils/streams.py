"""Feeding a detector a stream and collecting the indices where it fired (river's test style)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from device.monitor.base import DriftDetector


def alarms(detector: DriftDetector, stream: Iterable[Any]) -> list[int]:
    found = []
    for i, x in enumerate(stream):
        detector.update(x)
        if detector.drift_detected:
            found.append(i)
    return found
