"""Page-Hinkley test on a scalar stream: the kNN-distance detector (mean distance to the k neighbours)."""

from __future__ import annotations

from device.monitor.base import DriftDetector, check_mode, check_positive


class PageHinkley(DriftDetector):
    """Page-Hinkley change detection on the running (fading) mean of the input.

    m_t = alpha * m_{t-1} + (x_t - mean_t - delta) accumulates deviations from the running
    mean; an increase alarms when m_t - min(m) > threshold (mirrored for "down").
    Thresholds and delta are in the input's units (reference σ for a z-scored input).

    References: E. S. Page, "Continuous inspection schemes", Biometrika 41 (1954) 100-115;
    D. V. Hinkley, "Inference about the change-point from cumulative sum tests",
    Biometrika 58 (1971) 509-523. Shaped after river's `drift.PageHinkley`.
    """

    def __init__(
        self,
        min_instances: int = 30,
        delta: float = 0.005,
        threshold: float = 50.0,
        alpha: float = 1 - 0.0001,
        mode: str = "up",
    ) -> None:
        if min_instances < 1:
            raise ValueError(f"min_instances must be >= 1, got {min_instances}")
        if not 0 < alpha <= 1:
            raise ValueError(f"alpha must be in (0, 1], got {alpha}")
        if not delta >= 0:
            raise ValueError(f"delta must be >= 0, got {delta}")
        self.min_instances = int(min_instances)
        self.delta = float(delta)
        self.threshold = check_positive("threshold", threshold)
        self.alpha = float(alpha)
        self.mode = check_mode(mode)
        super().__init__()

    def _reset(self) -> None:
        super()._reset()
        self._n = 0
        self._mean = 0.0
        self._sum_up = 0.0
        self._min_up = 0.0
        self._sum_down = 0.0
        self._max_down = 0.0

    @property
    def statistic(self) -> float:
        up = self._sum_up - self._min_up if self.mode != "down" else 0.0
        down = self._max_down - self._sum_down if self.mode != "up" else 0.0
        return max(up, down)

    def update(self, value: float) -> None:
        if self._drift_detected:
            self._reset()
        self._n += 1
        self._mean += (value - self._mean) / self._n
        deviation = value - self._mean
        self._sum_up = self.alpha * self._sum_up + deviation - self.delta
        self._sum_down = self.alpha * self._sum_down + deviation + self.delta
        self._min_up = min(self._min_up, self._sum_up)
        self._max_down = max(self._max_down, self._sum_down)
        if self._n >= self.min_instances:
            self._drift_detected = self.statistic > self.threshold
