"""Metric records for the server's charts: the gate figures and the mean confidence, every `METRICS_EVERY_S`."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from device.outbox import Outbox

METRICS_EVERY_S = 30.0  # between two metric records (latency, confidence, drift-alarm rate) in the outbox


class MetricsRecorder:
    """`observe` each frame's confidence; a metric record goes to `outbox` when one is due.

    `figures()` is the health's gate figures (`Health.figures`): model_version, latency_ms_p95, ...
    """

    def __init__(self, outbox: Outbox, figures: Callable[[], dict[str, Any]]) -> None:
        self.outbox = outbox
        self.figures = figures
        self._confidence = [0.0, 0]  # sum and count of the kNN confidence since the last metric record
        self._next = time.monotonic() + METRICS_EVERY_S

    def observe(self, confidence: float, now: float) -> None:
        """Count one frame's confidence, seen at monotonic time `now`; record the metrics if they are due."""
        self._confidence[0] += confidence
        self._confidence[1] += 1
        if now >= self._next:
            self.record()

    def record(self) -> None:
        """A metric record: the gate figures and the mean confidence since the last one."""
        total, count = self._confidence
        health = self.figures()
        metrics = {"latency_ms_p95": health["latency_ms_p95"], "drift_alarm_rate": health["drift_alarm_rate"],
                   "error_rate": health["error_rate"], "frames": health["frames"]}
        if count:
            metrics["confidence"] = round(total / count, 4)
        self.outbox.append("metric", {"metrics": metrics, "model_version": health["model_version"]})
        self._confidence = [0.0, 0]
        self._next = time.monotonic() + METRICS_EVERY_S
