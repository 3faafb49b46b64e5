"""Class-conditional distribution test on the PCA components: Cramér–von Mises over a short window.

Catches changes in the shape of the features' distribution (a defocused lens) that move their
mean too little for the feature-statistics chart to see quickly.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from device.monitor.base import DriftDetector, check_positive


class FeatureCVM(DriftDetector):
    """Max over components of the one-sample Cramér–von Mises ω² of a window's residual ranks.

    Each frame's z-scored components less the centroid of its predicted class are its residuals;
    what varies between classes is so taken out, and a run of one class looks like any other run.
    The detector learns from the stream itself, river style: the first `baseline` frames give the
    class centroids, the next `reference` residuals the reference distribution of each component.
    From then on each residual becomes its rank u in that reference, and over the last `window`
    frames ω² = 1/(12W) + Σ_i ((2i - 1)/(2W) - u_(i))² is computed per component (0.0083 when the
    window is spread like the reference, up to (4W² - 1)/(12W) ≈ W/3 when it sits at one end).
    `statistic` is the largest ω²; frames of a class unseen while learning are skipped. After an
    alarm everything is learned anew. Per update O(dim · (reference + window log window)).

    References: H. Cramér, "On the composition of elementary errors", Skandinavisk Aktuarietidskrift
    11 (1928) 13-74; T. W. Anderson, D. A. Darling, "Asymptotic theory of certain goodness of fit
    criteria", Annals of Mathematical Statistics 23 (1952) 193-212; G. J. Ross, N. M. Adams,
    "Two nonparametric control charts for detecting arbitrary distribution changes", Journal of
    Quality Technology 44 (2012) 102-116.
    """

    def __init__(
        self, dim: int, window: int = 10, reference: int = 200, baseline: int = 150, threshold: float = 2.0
    ) -> None:
        if dim < 1:
            raise ValueError(f"dim must be >= 1, got {dim}")
        if window < 2:
            raise ValueError(f"window must be >= 2, got {window}")
        if reference < window:
            raise ValueError(f"reference must be >= window ({window}), got {reference}")
        if baseline < 1:
            raise ValueError(f"baseline must be >= 1, got {baseline}")
        self.dim = int(dim)
        self.window = int(window)
        self.reference = int(reference)
        self.baseline = int(baseline)
        self.threshold = check_positive("threshold", threshold)
        # rank u = (count + 0.5) / (reference + 1) of a residual whose component exceeds `count` reference
        # values; the window keeps the counts, so ω² compares sorted counts with these targets instead
        targets = (2.0 * np.arange(1, self.window + 1) - 1.0) / (2.0 * self.window)
        self._targets = (targets * (self.reference + 1) - 0.5)[:, None]
        self._unit = 1.0 / (self.reference + 1) ** 2
        super().__init__()

    def _reset(self) -> None:
        super()._reset()
        self._n = 0  # frames seen while learning the centroids
        self._sums: dict[str, np.ndarray] = {}  # per class: the component sums, then the centroid
        self._counts: dict[str, int] = {}
        # The reference, sorted per component once full. float32: half the bytes in memory and on the SD card, where
        # it is written anew after each alarm (saved by the monitor as float32, exactly); a residual's rank is
        # found against it in float64, and the drift benchmark's alarms are the same as with a float64 reference.
        # A float64 reference saved by earlier code is rounded to float32 as it is restored.
        self._residuals = np.zeros((self.reference, self.dim), dtype=np.float32)
        self._filled = 0  # rows of `_residuals` filled
        self._ranks = np.zeros((self.window, self.dim))  # ring buffer of the window's rank counts
        self._ranked = 0  # ranks computed so far
        self._score = 0.0

    def state(self) -> dict[str, Any]:
        first = self._ranked % self.window if self._ranked >= self.window else 0  # the oldest rank's row
        order = [(first + i) % self.window for i in range(min(self._ranked, self.window))]
        return {
            "_drift_detected": self._drift_detected,
            "_n": self._n,
            "_sums": {c: s.tolist() for c, s in self._sums.items()},
            "_counts": dict(self._counts),
            "_residuals": self._residuals[: self._filled].tolist(),
            "_ranks": self._ranks[order].astype(np.int64).tolist(),  # rank counts (integers), oldest first
            "_score": self._score,
        }

    def saved_state(self) -> dict[str, Any]:
        """`state()` less what is half learned: centroids of fewer than `baseline` frames, or a reference of
        fewer than `reference` residuals, are left out, and a restored detector learns them again from the next
        frames (a restart in the middle costs at most `baseline + reference` frames of learning, no alarm).

        A reference being filled changes at every save, and each version would be written to the SD card in
        full (200 x dim floats, 400 KB at dim 256); a complete one is written once and stays put until the next
        alarm.
        """
        state = self.state()
        if self._n < self.baseline:
            state.update(_n=0, _sums={}, _counts={})
        elif self._filled < self.reference:
            state.update(_residuals=[], _ranks=[])
        return state

    def restore(self, state: dict[str, Any]) -> None:
        if set(state) != set(self.state()):
            raise ValueError(f"state keys {sorted(state)} do not match {sorted(self.state())}")
        sums = {str(c): np.asarray(v, dtype=np.float64) for c, v in state["_sums"].items()}
        residuals, ranks = self._rows(state["_residuals"]), self._rows(state["_ranks"])
        if any(v.shape != (self.dim,) for v in sums.values()) or len(residuals) > self.reference:
            raise ValueError(f"feature-cvm state does not fit dim {self.dim} and reference {self.reference}")
        if len(ranks) > self.window:
            raise ValueError(f"feature-cvm state has {len(ranks)} ranks, the window is {self.window}")
        self._reset()
        self._drift_detected = bool(state["_drift_detected"])
        self._n, self._score = int(state["_n"]), float(state["_score"])
        self._sums, self._counts = sums, {str(c): int(v) for c, v in state["_counts"].items()}
        self._filled = len(residuals)
        self._residuals[: self._filled] = residuals
        self._ranks[: len(ranks)] = ranks
        self._ranked = len(ranks)

    def _rows(self, values: Any) -> np.ndarray:
        rows = np.asarray(values, dtype=np.float64)
        if rows.size == 0:
            return np.zeros((0, self.dim))
        if rows.ndim != 2 or rows.shape[1] != self.dim:
            raise ValueError(f"feature-cvm state does not fit dim {self.dim}: rows of shape {rows.shape[1:]}")
        return rows

    @property
    def statistic(self) -> float:
        return self._score

    def update(self, value: tuple[np.ndarray, str]) -> None:
        """Feed one (z-scored component vector of shape (dim,), predicted label)."""
        if self._drift_detected:
            self._reset()
        vector, label = value
        if self._n < self.baseline:
            self._n += 1
            if label in self._sums:
                self._sums[label] += vector
                self._counts[label] += 1
            else:
                self._sums[label], self._counts[label] = np.array(vector, dtype=np.float64), 1
            if self._n == self.baseline:  # the sums become centroids
                for c, total in self._sums.items():
                    total /= self._counts[c]
            return
        centroid = self._sums.get(label)
        if centroid is None:
            return
        if self._filled < self.reference:
            np.subtract(vector, centroid, out=self._residuals[self._filled])
            self._filled += 1
            if self._filled == self.reference:
                self._residuals.sort(axis=0)
            return
        self._ranks[self._ranked % self.window] = np.count_nonzero(self._residuals < vector - centroid, axis=0)
        self._ranked += 1
        if self._ranked < self.window:
            return
        window = np.sort(self._ranks, axis=0)
        window -= self._targets
        self._score = 1.0 / (12.0 * self.window) + self._unit * float(np.einsum("ij,ij->j", window, window).max())
        self._drift_detected = self._score > self.threshold
