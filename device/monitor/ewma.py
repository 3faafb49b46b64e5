"""EWMA control chart on a scalar stream: the model-confidence detector."""

from __future__ import annotations

from device.monitor.base import DriftDetector, check_mode, check_positive


class EWMA(DriftDetector):
    """Exponentially weighted moving average against a known `target`.

    e_t = lam * x_t + (1 - lam) * e_{t-1}, started at `target`; an alarm when e_t - target
    leaves ±`threshold` on the watched side, after `min_instances` updates. The threshold is
    in the input's units: with a z-scored input, the chart's own σ is sqrt(lam / (2 - lam)).

    Reference: S. W. Roberts, "Control chart tests based on geometric moving averages",
    Technometrics 1 (1959) 239-250.
    """

    def __init__(
        self,
        lam: float = 0.05,
        threshold: float = 1.0,
        target: float = 0.0,
        min_instances: int = 20,
        mode: str = "down",
    ) -> None:
        if not 0 < lam <= 1:
            raise ValueError(f"lam must be in (0, 1], got {lam}")
        if min_instances < 1:
            raise ValueError(f"min_instances must be >= 1, got {min_instances}")
        self.lam = float(lam)
        self.threshold = check_positive("threshold", threshold)
        self.target = float(target)
        self.min_instances = int(min_instances)
        self.mode = check_mode(mode)
        super().__init__()

    def _reset(self) -> None:
        super()._reset()
        self._n = 0
        self._level = self.target

    @property
    def statistic(self) -> float:
        shift = self._level - self.target
        return shift if self.mode == "up" else -shift if self.mode == "down" else abs(shift)

    def update(self, value: float) -> None:
        if self._drift_detected:
            self._reset()
        self._n += 1
        self._level += self.lam * (value - self._level)
        self._drift_detected = self._n >= self.min_instances and self.statistic > self.threshold
