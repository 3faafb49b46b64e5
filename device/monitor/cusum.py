"""Tabular CUSUM against a known reference level: the z-scored kNN distance should stay near 0."""

from __future__ import annotations

from device.monitor.base import DriftDetector, check_mode, check_positive


class CUSUM(DriftDetector):
    """Two one-sided cumulative sums of deviations from `target`, each less an allowance `drift`.

    S+_t = max(0, S+_{t-1} + x_t - target - drift), S-_t = max(0, S-_{t-1} - x_t + target - drift);
    an alarm when the watched side exceeds `threshold`. With a z-scored input, `drift` = 0.5 tunes
    it to a one-σ shift; `threshold` trades delay for the in-control run length.

    References: E. S. Page, "Continuous inspection schemes", Biometrika 41 (1954) 100-115;
    D. C. Montgomery, "Introduction to Statistical Quality Control", 6th ed., section 9.1.
    """

    def __init__(self, drift: float = 0.5, threshold: float = 8.0, target: float = 0.0, mode: str = "up"):
        if not drift >= 0:
            raise ValueError(f"drift must be >= 0, got {drift}")
        self.drift = float(drift)
        self.threshold = check_positive("threshold", threshold)
        self.target = float(target)
        self.mode = check_mode(mode)
        super().__init__()

    def _reset(self) -> None:
        super()._reset()
        self._upper = 0.0
        self._lower = 0.0

    @property
    def statistic(self) -> float:
        return max(self._upper if self.mode != "down" else 0.0, self._lower if self.mode != "up" else 0.0)

    def update(self, value: float) -> None:
        if self._drift_detected:
            self._reset()
        deviation = value - self.target
        self._upper = max(0.0, self._upper + deviation - self.drift)
        self._lower = max(0.0, self._lower - deviation - self.drift)
        self._drift_detected = self.statistic > self.threshold
