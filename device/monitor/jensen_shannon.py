"""Prediction-distribution detector: the class histogram of a sliding window against the reference."""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Sequence

from device.monitor.base import DriftDetector, check_positive


def js_divergence(p: Sequence[float], q: Sequence[float]) -> float:
    """Jensen-Shannon divergence of two distributions, in bits (0 = equal, 1 = disjoint)."""
    total = 0.0
    for a, b in zip(p, q, strict=True):
        m = 0.5 * (a + b)
        if a > 0:
            total += 0.5 * a * math.log2(a / m)
        if b > 0:
            total += 0.5 * b * math.log2(b / m)
    return max(total, 0.0)


class JensenShannon(DriftDetector):
    """Jensen-Shannon divergence between the last `window` predicted labels and `distribution`.

    Labels outside `classes` (a class learned after the reference was built) share one extra
    bin of reference mass 0. The test starts once the window is full; per update O(classes).

    Reference: J. Lin, "Divergence measures based on the Shannon entropy",
    IEEE Transactions on Information Theory 37 (1991) 145-151.
    """

    def __init__(
        self, classes: Sequence[str], distribution: Sequence[float], window: int = 100, threshold: float = 0.1
    ) -> None:
        if len(classes) == 0 or len(classes) != len(distribution) or len(set(classes)) != len(classes):
            raise ValueError("classes must be distinct, non-empty and one per distribution entry")
        if any(not s >= 0 for s in distribution) or not math.isclose(sum(distribution), 1.0, abs_tol=1e-6):
            raise ValueError("distribution must be non-negative shares summing to 1")
        if window < 1:
            raise ValueError(f"window must be >= 1, got {window}")
        self.classes = list(classes)
        self.distribution = [float(s) for s in distribution]
        self.window = int(window)
        self.threshold = check_positive("threshold", threshold)
        self._index = {c: i for i, c in enumerate(self.classes)}
        self._reference = [*self.distribution, 0.0]
        super().__init__()

    def _reset(self) -> None:
        super()._reset()
        self._labels: deque[int] = deque(maxlen=self.window)
        self._counts = [0] * (len(self.classes) + 1)
        self._divergence = 0.0

    def state(self) -> dict[str, object]:
        state = super().state()
        del state["_index"], state["_reference"]  # derived from the hyperparameters
        return state

    def restore(self, state: dict[str, object]) -> None:
        super().restore({**state, "_index": self._index, "_reference": self._reference})

    @property
    def statistic(self) -> float:
        return self._divergence

    def update(self, value: str) -> None:
        if self._drift_detected:
            self._reset()
        code = self._index.get(value, len(self.classes))
        if len(self._labels) == self.window:
            self._counts[self._labels[0]] -= 1
        self._labels.append(code)
        self._counts[code] += 1
        if len(self._labels) < self.window:
            return
        shares = [c / self.window for c in self._counts]
        self._divergence = js_divergence(shares, self._reference)
        self._drift_detected = self._divergence > self.threshold
