"""Validated labels: an operator's verdict on a drift sample, by sequence number, waiting to be applied.

Labels queue while a pseudo-label is on probation, so each adaptation stays attributable and a
rollback never undoes the operator's work. The queue holds one label per frame (a newer label for
the same frame replaces the waiting one) and is bounded; the oldest label leaves first.
`read_record` turns a label record from the server into a `ValidatedLabel`, or says why it must not
reach the adapter.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from device.adapt.pseudolabel import NEW_CLASS_PREFIX

if TYPE_CHECKING:
    from contract.bundle import Bundle

log = logging.getLogger(__name__)

MAX_LABEL_CHARS = 64  # the kNN state stores labels as <U64
LEARNABLE_KEY = "learnable_labels"  # bundle.json: the classes operators may teach beyond the bundle's own


def label_refusal(label: object) -> str | None:
    """Why `label` cannot name a class ("bad_label", "reserved_label"), or None when it can."""
    if not isinstance(label, str) or not label.strip() or len(label) > MAX_LABEL_CHARS:
        return "bad_label"
    if label.startswith(NEW_CLASS_PREFIX):
        return "reserved_label"
    return None


def check_label(label: object) -> str:
    """Return `label` when it is a usable class name; raise ValueError naming what is allowed."""
    reason = label_refusal(label)
    if reason == "bad_label":
        raise ValueError(f"label must be a non-blank string of at most {MAX_LABEL_CHARS} characters, got {label!r}")
    if reason == "reserved_label":
        raise ValueError(f"labels starting with {NEW_CLASS_PREFIX!r} are reserved for pseudo-labels, got {label!r}")
    assert isinstance(label, str)
    return label


@dataclass(frozen=True, slots=True)
class ValidatedLabel:
    """The operator's label for the frame `seq`; `vector` when the server sent it along."""

    seq: int
    label: str
    vector: np.ndarray | None = None  # (d,) float32 in PCA space


def read_record(record: Mapping[str, Any], bundle: Bundle) -> ValidatedLabel | str:
    """The label a server record carries, or why it is refused before the adapter sees it.

    "other_model": the frame was seen by another model (its vector lies in another feature space);
    "forbidden_label": the bundle lists the classes operators may teach, and this is none of them;
    "bad_label", "reserved_label", "bad_vector", "no_frame": the record itself is unusable.
    """
    version = record.get("model_version")
    if version is not None and str(version) != bundle.version:
        return "other_model"
    seq, label = record.get("frame_seq"), record.get("label")
    if not isinstance(seq, int) or isinstance(seq, bool):
        return "no_frame"
    reason = label_refusal(label)
    if reason is not None:
        return reason
    assert isinstance(label, str)
    learnable = bundle.meta.get(LEARNABLE_KEY)
    if isinstance(learnable, list) and label not in bundle.labels and label not in learnable:
        return "forbidden_label"
    raw, vector = record.get("vector"), None
    if raw is not None and not (isinstance(raw, list | tuple) and not raw):  # an empty list: no vector either
        try:
            vector = np.asarray(raw, dtype=np.float32)
        except (TypeError, ValueError):
            return "bad_vector"
        if vector.ndim != 1:
            return "bad_vector"
    return ValidatedLabel(seq, label, vector)


def refusal(record: Mapping[str, Any], reason: str) -> dict[str, Any]:
    """The adaptation event that reports a label record refused by `read_record`."""
    seq = record.get("frame_seq")
    label = record.get("label")
    log.warning("label %r for frame %r refused: %s", label, seq, reason)
    return {
        "kind": "adaptation",
        "action": "label_rejected",
        "label": label if isinstance(label, str) else repr(label),
        "seqs": [seq] if isinstance(seq, int) else [],
        "reason": reason,
        "label_model_version": record.get("model_version"),
    }


class LabelQueue:
    """Validated labels in arrival order, one per frame, at most `capacity` of them."""

    def __init__(self, capacity: int) -> None:
        if capacity < 1:
            raise ValueError(f"capacity must be >= 1, got {capacity}")
        self.capacity = capacity
        self.dropped = 0  # labels pushed out by newer ones before they could be applied
        self._items: OrderedDict[int, ValidatedLabel] = OrderedDict()

    def __len__(self) -> int:
        return len(self._items)

    def put(self, item: ValidatedLabel) -> ValidatedLabel | None:
        """Queue `item`; returns the label it replaced for the same frame, if one was waiting."""
        replaced = self._items.pop(item.seq, None)
        self._items[item.seq] = item
        while len(self._items) > self.capacity:
            _, old = self._items.popitem(last=False)
            self.dropped += 1
            log.warning("validated label for seq %d dropped: more than %d labels pending", old.seq, self.capacity)
        return replaced

    def take_all(self) -> list[ValidatedLabel]:
        """Every queued label, oldest first; the queue is empty afterwards."""
        items = list(self._items.values())
        self._items.clear()
        return items

    def to_arrays(self, dim: int) -> dict[str, np.ndarray]:
        """The queue as plain arrays (a zero vector with has_vector False stands for no vector)."""
        items = list(self._items.values())
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
