"""Validated labels: an operator's verdict on a drift sample, by sequence number, waiting to be applied.

Labels queue while a pseudo-label is on probation, so each adaptation stays attributable and a
rollback never undoes the operator's work. The queue is bounded; the oldest label leaves first.
"""

from __future__ import annotations

import logging
from collections import deque
from dataclasses import dataclass

import numpy as np

log = logging.getLogger(__name__)

MAX_LABEL_CHARS = 64  # the kNN state stores labels as <U64


def check_label(label: object) -> str:
    """Return `label` when it is a usable class name; raise ValueError naming what is allowed."""
    if not isinstance(label, str) or not label.strip() or len(label) > MAX_LABEL_CHARS:
        raise ValueError(f"label must be a non-blank string of at most {MAX_LABEL_CHARS} characters, got {label!r}")
    return label


@dataclass(frozen=True, slots=True)
class ValidatedLabel:
    """The operator's label for the frame `seq`; `vector` when the server sent it along."""

    seq: int
    label: str
    vector: np.ndarray | None = None  # (d,) float32 in PCA space


class LabelQueue:
    """Validated labels in arrival order, at most `capacity` of them."""

    def __init__(self, capacity: int) -> None:
        if capacity < 1:
            raise ValueError(f"capacity must be >= 1, got {capacity}")
        self.capacity = capacity
        self.dropped = 0  # labels pushed out by newer ones before they could be applied
        self._items: deque[ValidatedLabel] = deque()

    def __len__(self) -> int:
        return len(self._items)

    def put(self, item: ValidatedLabel) -> None:
        self._items.append(item)
        while len(self._items) > self.capacity:
            old = self._items.popleft()
            self.dropped += 1
            log.warning("validated label for seq %d dropped: more than %d labels pending", old.seq, self.capacity)

    def take_all(self) -> list[ValidatedLabel]:
        """Every queued label, oldest first; the queue is empty afterwards."""
        items = list(self._items)
        self._items.clear()
        return items

    def to_arrays(self, dim: int) -> dict[str, np.ndarray]:
        """The queue as plain arrays (a zero vector with has_vector False stands for no vector)."""
        items = list(self._items)
        vectors = np.zeros((len(items), dim), dtype=np.float32)
        for i, item in enumerate(items):
            if item.vector is not None:
                vectors[i] = item.vector
        return {
            "p_seq": np.asarray([i.seq for i in items], dtype=np.int64),
            "p_label": np.asarray([i.label for i in items], dtype=f"<U{MAX_LABEL_CHARS}"),
            "p_vector": vectors,
            "p_has_vector": np.asarray([i.vector is not None for i in items], dtype=bool),
        }

    def load_arrays(self, arrays: dict[str, np.ndarray]) -> None:
        """Replace the queue with labels read back from `to_arrays`."""
        self._items.clear()
        rows = zip(arrays["p_seq"], arrays["p_label"], arrays["p_vector"], arrays["p_has_vector"], strict=True)
        for seq, label, vector, has_vector in rows:
            kept = np.asarray(vector, dtype=np.float32) if has_vector else None
            self.put(ValidatedLabel(int(seq), str(label), kept))
