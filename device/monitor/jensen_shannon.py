"""Prediction-distribution detector: the class histogram of a sliding window against the reference."""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Sequence

from device.monitor.base import DriftDetector, check_positive


def _bin_terms(a: float, b: float) -> tuple[float, float]:
    """The two terms one histogram bin adds to the divergence (0.0 for an empty side)."""
    m = 0.5 * (a + b)
    return (0.5 * a * math.log2(a / m) if a > 0 else 0.0, 0.5 * b * math.log2(b / m) if b > 0 else 0.0)


def js_divergence(p: Sequence[float], q: Sequence[float]) -> float:
    """Jensen-Shannon divergence of two distributions, in bits (0 = equal, 1 = disjoint)."""
    return _summed([_bin_terms(a, b) for a, b in zip(p, q, strict=True)])


def _summed(terms: Sequence[tuple[float, float]]) -> float:
    total = 0.0
    for a, b in terms:  # in bin order, so the detector's cached terms give the same bits
        total += a
        total += b
    return max(total, 0.0)


class JensenShannon(DriftDetector):
    """Jensen-Shannon divergence between the last `window` predicted labels and `distribution`.

    Labels outside `classes` (a class learned after the reference was built) share one extra
    bin of reference mass 0. The test starts once the window is full; per update O(classes).

    When the device learns classes (`learn`), they get bins of their own, and once a full window
    of predictions has been made with them the reference takes them in: each learned class gets
    its share of that window, and the reference classes keep their relative shares in the rest.
    A device that has adapted to a new class stops alarming on it; one whose predictions keep
    moving does not.

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
        self._learned: list[str] = []  # classes learned on the device: bins after the "other" bin
        self._rebase_in = 0  # 1 + predictions still to come before the reference takes learned classes in
        super().__init__()

    def _reset(self) -> None:
        super()._reset()
        self._labels: deque[int] = deque(maxlen=self.window)
        self._counts = [0] * len(self._reference)
        self._divergence = 0.0
        self._terms = [_bin_terms(0.0, b) for b in self._reference]  # per bin, kept in step with _counts

    def state(self) -> dict[str, object]:
        state = super().state()
        del state["_index"], state["_terms"]  # derived from the classes, the learned ones and the counts
        return state

    def restore(self, state: dict[str, object]) -> None:
        # State saved before classes could be learned has no learned bins and the bundle's reference.
        state = {"_learned": [], "_rebase_in": 0, "_reference": [*self.distribution, 0.0], **state}
        learned = [str(c) for c in state["_learned"]]  # type: ignore[attr-defined]
        index = {**{c: i for i, c in enumerate(self.classes)},
                 **{c: len(self.classes) + 1 + i for i, c in enumerate(learned)}}
        super().restore({**state, "_index": index, "_terms": self._terms})
        self._reference = [float(b) for b in self._reference]
        if len(self._reference) != len(self._counts) or len(self._reference) != len(self.classes) + 1 + len(learned):
            raise ValueError("prediction-distribution state: bins, counts and classes disagree")
        self._terms = [_bin_terms(c / self.window, b) for c, b in zip(self._counts, self._reference, strict=True)]

    def learn(self, classes: Sequence[str]) -> None:
        """Classes the device's classifier knows now: new ones get bins, and the reference takes them in
        once a full window of predictions has been made with them."""
        new = [c for c in dict.fromkeys(classes) if c not in self._index]
        if not new:
            return
        for name in new:
            self._index[name] = len(self._reference)
            self._learned.append(name)
            self._reference.append(0.0)
            self._counts.append(0)
            self._terms.append((0.0, 0.0))
        self._rebase_in = self.window + 1

    def _rebase(self) -> None:
        """Give each learned class its share of the current window; the reference classes share the rest
        in their original proportions (the "other" bin keeps no mass)."""
        first_learned = len(self.classes) + 1
        shares = [c / self.window for c in self._counts]
        learned = shares[first_learned:]
        rest = max(0.0, 1.0 - sum(learned))
        self._reference = [*(d * rest for d in self.distribution), 0.0, *learned]
        self._terms = [_bin_terms(a, b) for a, b in zip(shares, self._reference, strict=True)]

    @property
    def statistic(self) -> float:
        return self._divergence

    def update(self, value: str) -> None:
        if self._drift_detected:
            self._reset()
        code = self._index.get(value, len(self.classes))
        labels, counts, terms, window = self._labels, self._counts, self._terms, self.window
        if len(labels) == window:  # the oldest label leaves: only its bin and the new one change
            old = labels[0]
            counts[old] -= 1
            terms[old] = _bin_terms(counts[old] / window, self._reference[old])
        labels.append(code)
        counts[code] += 1
        terms[code] = _bin_terms(counts[code] / window, self._reference[code])
        if self._rebase_in:  # a class was learned: rebase once a whole window was predicted after it
            self._rebase_in = max(self._rebase_in - 1, 1)
            if self._rebase_in == 1 and len(labels) == window:
                self._rebase_in = 0
                self._rebase()
                terms = self._terms
        if len(labels) < window:
            return
        self._divergence = _summed(terms)
        self._drift_detected = self._divergence > self.threshold
