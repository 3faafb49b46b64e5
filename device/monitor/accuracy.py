"""Label-based accuracy detector: runs only when validated labels arrive (`update(correct)`)."""

from __future__ import annotations

import math

from device.monitor.base import DriftDetector, check_positive


class AccuracyCUSUM(DriftDetector):
    """Bernoulli CUSUM on the error indicator: tuned to detect a rise of the error rate p0 -> p1.

    Each validated prediction adds its log-likelihood ratio, log(p1/p0) for an error and
    log((1-p1)/(1-p0)) for a correct one; the sum is floored at 0 and alarms above `threshold`.

    Reference: M. R. Reynolds Jr. and Z. G. Stoumbos, "A CUSUM chart for monitoring a proportion
    when inspecting continuously", Journal of Quality Technology 31 (1999) 87-108.
    """

    def __init__(self, p0: float = 0.05, p1: float = 0.3, threshold: float = 5.0) -> None:
        if not 0 < p0 < p1 < 1:
            raise ValueError(f"need 0 < p0 < p1 < 1, got p0={p0}, p1={p1}")
        self.p0 = float(p0)
        self.p1 = float(p1)
        self.threshold = check_positive("threshold", threshold)
        self._error_step = math.log(p1 / p0)
        self._correct_step = math.log((1 - p1) / (1 - p0))
        super().__init__()

    def _reset(self) -> None:
        super()._reset()
        self._sum = 0.0

    def state(self) -> dict[str, object]:
        return {"_drift_detected": self._drift_detected, "_sum": self._sum}

    def restore(self, state: dict[str, object]) -> None:
        super().restore({**state, "_error_step": self._error_step, "_correct_step": self._correct_step})

    @property
    def statistic(self) -> float:
        return self._sum

    def update(self, value: bool) -> None:
        if self._drift_detected:
            self._reset()
        self._sum = max(0.0, self._sum + (self._correct_step if value else self._error_step))
        self._drift_detected = self._sum > self.threshold
