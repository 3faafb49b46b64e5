"""The adapter: quarantines drift samples, pseudo-labels stable clusters, applies operator labels, rolls back.

`observe` runs once per frame and is O(1) unless a cluster search or an adaptation runs (every
`check_every` quarantined samples). Every adaptation and rollback is returned as a plain JSON event
for the outbox. The reference set stays bounded: `KNNClassifier.add` evicts by its own policy.
"""

from __future__ import annotations

import logging
import math
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from device.adapt.config import AdaptConfig
from device.adapt.labels import LabelQueue, ValidatedLabel, check_label
from device.adapt.probation import Probation
from device.adapt.pseudolabel import PseudoLabeler, reference_scale
from device.adapt.quarantine import Quarantine, QuarantinedSample
from device.adapt.store import load_state, save_state
from device.pipeline.knn import KNNClassifier, Snapshot
from device.pipeline.result import Result

log = logging.getLogger(__name__)

Event = dict[str, Any]


class Adapter:
    """Adapts `classifier` (in place) to what the drift brings; see the module docstring."""

    def __init__(
        self,
        classifier: KNNClassifier,
        config: AdaptConfig | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.classifier = classifier
        self.config = cfg = config or AdaptConfig()
        self.quarantine = Quarantine(cfg.quarantine_size, cfg.max_age)
        self.pseudo = PseudoLabeler(cfg)
        self.pending = LabelQueue(cfg.max_pending)
        self.probation = Probation(
            cfg.window, cfg.probation, cfg.max_confidence_drop, cfg.max_agreement_drop, cfg.max_growth
        )
        self.scale = reference_scale(classifier, cfg.scale_quantile)  # "near", in the kNN's metric
        self.counts: Counter[str] = Counter()  # rejected_vectors, rejected_labels, adaptations, rollbacks
        self.seq = -1  # sequence number of the last observed frame
        self.cooldown_until = -1  # no pseudo-labelling before this sequence number
        self.since_check = 0  # quarantined samples since the last cluster search
        self._clock = clock

    # -- per frame ------------------------------------------------------------------------
    def observe(self, result: Result, drifting: bool) -> list[Event]:
        """Account for one processed frame; returns the adaptation events it caused (usually none)."""
        vector = self._checked(result.vector)
        if vector is None:
            self.counts["rejected_vectors"] += 1
            log.debug("frame %d: non-finite vector ignored by the adapter", result.seq)
            return []
        self.seq = result.seq
        flagged = False
        if drifting or self.probation.active:  # a calm frame outside probation only ages the quarantine
            labels = result.neighbours.labels
            agreement = sum(label == result.label for label in labels) / max(len(labels), 1)
            nearest = float(result.neighbours.distances[0]) if len(labels) else float("inf")
            flagged = drifting and (
                nearest > self.config.novelty_distance * self.scale
                or result.confidence < self.config.min_confidence
                or bool(result.drift)
            )
            self.probation.record(result.confidence, agreement, flagged, drifting)
        self.quarantine.expire(result.seq)
        if flagged:
            sample = QuarantinedSample(result.seq, vector, result.label, result.confidence, nearest, self._clock())
            self.quarantine.add(sample)
            self.since_check += 1
        if self.probation.active:
            return self._judge() if self.probation.done else []
        if len(self.pending):
            return self._apply_pending()
        if self.since_check >= self.config.check_every and result.seq >= self.cooldown_until:
            self.since_check = 0
            return self._pseudo_label()
        return []

    def _checked(self, vector: np.ndarray) -> np.ndarray | None:
        """`vector` as float32 (d,); None when not finite; ValueError on a wrong dimension."""
        v = np.asarray(vector, dtype=np.float32)
        if v.shape != (self.classifier.dim,):
            raise ValueError(f"vector has shape {v.shape}, the reference set has dimension {self.classifier.dim}")
        # A finite sum of squares proves every component finite (one dot); only otherwise look closer.
        return v if math.isfinite(float(v.dot(v))) or bool(np.isfinite(v).all()) else None

    # -- heuristic adaptation ---------------------------------------------------------------
    def _pseudo_label(self) -> list[Event]:
        seqs, vectors = self.quarantine.stacked()
        cluster = self.pseudo.propose(seqs, vectors, self.scale, self.classifier.metric)
        if cluster is None:
            return []
        named = self.pseudo.name(cluster, self.classifier, self.scale)
        if named is None:
            return []
        label, reason = named
        snapshot = self.classifier.snapshot()
        joined = cluster.seqs[: self.config.join_size]
        for vector in cluster.vectors[: self.config.join_size]:
            self.classifier.add(vector, label)
        self.quarantine.remove(cluster.seqs.tolist())
        self.pseudo.remember(label, cluster.seqs)
        self.counts["adaptations"] += 1
        event = self._event(
            "pseudo_label",
            label,
            joined,
            reason,
            members=len(cluster.seqs),
            spread=round(cluster.spread / self.scale, 4),
        )
        log.info(
            "pseudo-label %s: %d of %d clustered samples joined (%s)", label, len(joined), len(cluster.seqs), reason
        )
        self.probation.start(snapshot, event)
        return [event]

    def _judge(self) -> list[Event]:
        """End the probation: keep the adaptation, or restore the snapshot taken before it."""
        reason = self.probation.verdict()
        watch = self.probation.finish()
        if reason is None:
            log.info("pseudo-label %s kept after %d frames", watch.event["label"], watch.frames)
            return []
        self.classifier.restore(watch.snapshot)
        label = str(watch.event["label"])
        if watch.event["reason"] == "new_class":
            self.pseudo.forget(label)
        self.cooldown_until = self.seq + self.config.cooldown
        self.counts["rollbacks"] += 1
        log.warning("pseudo-label %s rolled back: %s", label, reason)
        return [
            self._event(
                "rollback",
                label,
                watch.event["seqs"],
                reason,
                before=_rounded(watch.baseline),
                after=_rounded(watch.health()),
            )
        ]

    # -- validated labels -------------------------------------------------------------------
    def apply_label(self, seq: int, label: str, vector: np.ndarray | None = None) -> list[Event]:
        """Take the operator's label for frame `seq`; applied now, or after a running probation."""
        label = check_label(label)
        checked = None
        if vector is not None:
            checked = self._checked(vector)
            if checked is None:
                self.counts["rejected_vectors"] += 1
                return [self._event("label_rejected", label, [seq], "non_finite_vector")]
        if checked is None and seq not in self.quarantine and self.pseudo.owner(seq) is None:
            self.counts["rejected_labels"] += 1
            log.warning("label %r for seq %d rejected: sample unknown here and no vector sent", label, seq)
            return [self._event("label_rejected", label, [seq], "unknown_seq")]
        self.pending.put(ValidatedLabel(seq, label, checked))
        return [] if self.probation.active else self._apply_pending()

    def _apply_pending(self) -> list[Event]:
        """Apply every queued label: rename pseudo-labelled clusters, then add the labelled samples."""
        events: list[Event] = []
        groups: dict[str, list[tuple[int, np.ndarray]]] = {}
        missing: dict[str, list[int]] = {}
        for item in self.pending.take_all():
            owner = self.pseudo.owner(item.seq)
            if owner is not None and owner != item.label:
                events.append(self._relabel(owner, item.label))
            sample = self.quarantine.pop(item.seq)
            vector = sample.vector if sample is not None else item.vector
            if vector is not None:
                groups.setdefault(item.label, []).append((item.seq, vector))
            elif owner is None:  # it left the quarantine while the label waited
                missing.setdefault(item.label, []).append(item.seq)
        for label, rows in groups.items():
            for _, vector in rows:
                self.classifier.add(vector, label)
            self.counts["adaptations"] += 1
            events.append(self._event("validated_label", label, [seq for seq, _ in rows], "operator"))
        for label, seqs in missing.items():
            self.counts["rejected_labels"] += len(seqs)
            events.append(self._event("label_rejected", label, seqs, "unknown_seq"))
        return events

    def _relabel(self, old: str, new: str) -> Event:
        """Rename the pseudo-label `old` to the operator's `new` in the reference set."""
        snapshot = self.classifier.snapshot()
        labels = snapshot.labels.copy()
        renamed = int(np.sum(labels == old))
        labels[labels == old] = new
        if renamed:
            self.classifier.restore(Snapshot(vectors=snapshot.vectors, labels=labels))
        members = self.pseudo.rename(old, new)
        log.info("pseudo-label %s renamed %s by the operator (%d reference samples)", old, new, renamed)
        return self._event("relabel", new, members, "operator", previous=old, renamed=renamed)

    # -- events and counters --------------------------------------------------------------
    def _event(self, action: str, label: str, seqs: Any, reason: str, **extra: Any) -> Event:
        return {
            "kind": "adaptation",
            "action": action,
            "label": label,
            "seqs": [int(s) for s in seqs],
            "reason": reason,
            "at_seq": self.seq,
            "sizes": {
                "reference": len(self.classifier),
                "quarantine": len(self.quarantine),
                "pending": len(self.pending),
            },
            **extra,
        }

    def stats(self) -> dict[str, int]:
        """Counters and sizes for /metrics and the heartbeat."""
        return {
            "quarantine": len(self.quarantine),
            "quarantine_dropped": self.quarantine.dropped,
            "pending_labels": len(self.pending),
            "pending_dropped": self.pending.dropped,
            "reference": len(self.classifier),
            "on_probation": int(self.probation.active),
            **{k: self.counts[k] for k in ("adaptations", "rollbacks", "rejected_vectors", "rejected_labels")},
        }

    # -- state ------------------------------------------------------------------------------
    def save(self, directory: str | Path) -> None:
        """Write the reference set and the adapter's state atomically (see `device.adapt.store`)."""
        save_state(self, Path(directory))

    def load(self, directory: str | Path) -> bool:
        """Read state written by `save`; False when there is none, `StateError` when it is unusable."""
        return load_state(self, Path(directory))


def _rounded(health: dict[str, float]) -> dict[str, float]:
    return {k: round(v, 4) for k, v in health.items()}
