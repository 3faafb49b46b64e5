"""The quarantine: samples flagged during a drift, waiting to be explained by a cluster or a label.

Bounded by count and by age (in frames); adding, expiring and removing a sample are O(1).
The frame image stays with the drift event in the outbox; only the PCA vector is kept here.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True, slots=True)
class QuarantinedSample:
    """One flagged frame, as the kNN saw it."""

    seq: int  # per-device sequence number of the frame
    vector: np.ndarray  # (d,) float32 in PCA space
    label: str  # the kNN's prediction when it was flagged
    confidence: float  # the kNN's vote share for `label`
    distance: float  # distance to its nearest reference sample
    time: float  # wall-clock seconds when flagged (informative only: no real-time clock)


class Quarantine:
    """An insertion-ordered, bounded buffer of `QuarantinedSample`s keyed by sequence number."""

    def __init__(self, capacity: int, max_age: int) -> None:
        if capacity < 1 or max_age < 1:
            raise ValueError(f"capacity and max_age must be >= 1, got {capacity} and {max_age}")
        self.capacity = capacity
        self.max_age = max_age
        self.dropped = 0  # samples that left full or expired, unexplained
        self._samples: OrderedDict[int, QuarantinedSample] = OrderedDict()

    def __len__(self) -> int:
        return len(self._samples)

    def __contains__(self, seq: object) -> bool:
        return seq in self._samples

    def __iter__(self) -> Iterator[QuarantinedSample]:
        return iter(self._samples.values())

    def get(self, seq: int) -> QuarantinedSample | None:
        return self._samples.get(seq)

    def add(self, sample: QuarantinedSample) -> None:
        """Hold `sample`; when full, the oldest sample leaves."""
        self._samples[sample.seq] = sample
        self._samples.move_to_end(sample.seq)
        while len(self._samples) > self.capacity:
            self._samples.popitem(last=False)
            self.dropped += 1

    def expire(self, now_seq: int) -> int:
        """Drop samples older than `max_age` frames at sequence number `now_seq`; returns how many."""
        n = 0
        while self._samples:
            oldest = next(iter(self._samples))
            if now_seq - oldest <= self.max_age:
                break
            del self._samples[oldest]
            n += 1
        self.dropped += n
        return n

    def pop(self, seq: int) -> QuarantinedSample | None:
        """Remove and return the sample of `seq` (None when it is not here)."""
        return self._samples.pop(seq, None)

    def remove(self, seqs: Iterable[int]) -> None:
        for seq in seqs:
            self._samples.pop(seq, None)

    def stacked(self) -> tuple[np.ndarray, np.ndarray]:
        """The held samples as (seqs (n,), vectors (n, d)), oldest first."""
        seqs = np.fromiter(self._samples.keys(), dtype=np.int64, count=len(self._samples))
        if not self._samples:
            return seqs, np.zeros((0, 0), dtype=np.float32)
        return seqs, np.stack([s.vector for s in self._samples.values()])

    def to_arrays(self) -> dict[str, np.ndarray]:
        """Every held sample as plain arrays (for an `.npz`, no pickle)."""
        samples = list(self._samples.values())
        seqs, vectors = self.stacked()
        return {
            "q_seq": seqs,
            "q_vector": vectors,
            "q_label": np.asarray([s.label for s in samples], dtype="<U64"),
            "q_confidence": np.asarray([s.confidence for s in samples], dtype=np.float64),
            "q_distance": np.asarray([s.distance for s in samples], dtype=np.float64),
            "q_time": np.asarray([s.time for s in samples], dtype=np.float64),
        }

    def load_arrays(self, arrays: dict[str, np.ndarray]) -> None:
        """Replace the content with samples read back from `to_arrays`."""
        self._samples.clear()
        rows = zip(
            arrays["q_seq"],
            arrays["q_vector"],
            arrays["q_label"],
            arrays["q_confidence"],
            arrays["q_distance"],
            arrays["q_time"],
            strict=True,
        )
        for seq, vector, label, confidence, distance, when in rows:
            self.add(
                QuarantinedSample(
                    int(seq),
                    np.asarray(vector, dtype=np.float32),
                    str(label),
                    float(confidence),
                    float(distance),
                    float(when),
                )
            )
