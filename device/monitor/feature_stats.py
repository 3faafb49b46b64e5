"""Feature-statistics detector: EWMA mean and spread of the PCA components against the reference."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from device.monitor.base import DriftDetector, check_positive


class FeatureStats(DriftDetector):
    """Diagonal MEWMA on the z-scored PCA components, plus an EWMA of their mean square.

    With z_t the components standardised by the reference and c = lam / (2 - lam):
    m_t = EWMA(z_t) gives T2 = |m_t|^2 / c (about chi-square with d degrees of freedom in
    control, PCA components being uncorrelated), and s_t = EWMA(|z_t|^2 / d) has mean 1.
    `statistic` is the larger of the two as standard scores, (T2 - d) / sqrt(2d) and
    |s_t - 1| / sqrt(2c/d), so `threshold` is in σ of the in-control chart. Components are
    winsorised at ±`clip` first, so one far-out frame (a rare but valid sample) cannot raise an
    alarm on its own, while a sustained shift still moves both charts.

    References: C. A. Lowry, W. H. Woodall, C. W. Champ, S. E. Rigdon, "A multivariate
    exponentially weighted moving average control chart", Technometrics 34 (1992) 46-53;
    S. W. Roberts, Technometrics 1 (1959) 239-250.
    """

    def __init__(
        self, dim: int, lam: float = 0.05, threshold: float = 6.0, min_instances: int = 20, clip: float = 3.0
    ) -> None:
        if dim < 1:
            raise ValueError(f"dim must be >= 1, got {dim}")
        if not 0 < lam <= 1:
            raise ValueError(f"lam must be in (0, 1], got {lam}")
        if min_instances < 1:
            raise ValueError(f"min_instances must be >= 1, got {min_instances}")
        self.dim = int(dim)
        self.lam = float(lam)
        self.threshold = check_positive("threshold", threshold)
        self.min_instances = int(min_instances)
        self.clip = check_positive("clip", clip)
        self._c = self.lam / (2.0 - self.lam)
        super().__init__()

    def _reset(self) -> None:
        super()._reset()
        self._n = 0
        self._mean = np.zeros(self.dim)
        self._square = 1.0
        self._score = 0.0
        self._work = np.empty((2, self.dim))  # scratch rows: the clipped input and the step towards it

    def state(self) -> dict[str, Any]:
        return {
            "_drift_detected": self._drift_detected,
            "_n": self._n,
            "_mean": self._mean.tolist(),
            "_square": self._square,
            "_score": self._score,
        }

    def restore(self, state: dict[str, Any]) -> None:
        mean = np.asarray(state["_mean"], dtype=np.float64)
        if mean.shape != (self.dim,):
            raise ValueError(f"state has {mean.shape} components, the detector has {self.dim}")
        super().restore({**state, "_mean": mean, "_c": self._c, "_work": self._work})

    @property
    def statistic(self) -> float:
        return self._score

    def update(self, value: np.ndarray) -> None:
        """Feed one z-scored component vector of shape (dim,)."""
        if self._drift_detected:
            self._reset()
        self._n += 1
        # np.clip, then mean += lam * (value - mean), in scratch space: this runs once per frame.
        value = np.maximum(np.minimum(value, self.clip, out=self._work[0]), -self.clip, out=self._work[0])
        step = np.subtract(value, self._mean, out=self._work[1])
        step *= self.lam
        self._mean += step
        square = float(value.dot(value)) / self.dim
        self._square += self.lam * (square - self._square)
        t2 = float(self._mean.dot(self._mean)) / self._c
        location = (t2 - self.dim) / math.sqrt(2.0 * self.dim)
        spread = abs(self._square - 1.0) / math.sqrt(2.0 * self._c / self.dim)
        self._score = max(location, spread)
        self._drift_detected = self._n >= self.min_instances and self._score > self.threshold
