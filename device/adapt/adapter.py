"""The adapter: quarantines drift samples, pseudo-labels stable clusters, applies operator labels, rolls back.

`observe` runs once per frame and is O(1) unless a cluster search or an adaptation runs (every
`check_every` quarantined samples). Every adaptation and rollback is returned as a plain JSON event
for the outbox. The reference set stays bounded: `KNNClassifier.add` evicts by its own policy.
A frame the adapter quarantines is, by its own test, unlike the known classes, whose samples still fill the
reference set and take its vote: once a new class exists (a pseudo-label, or a class the operator named that
the bundle lacks), such a frame's label and confidence become the vote among that class's samples when one is
within `novel_radius` (`Adapter.novel_vote`). Only the reported prediction changes: the quarantine, the
probation and the reference set see the kNN's own vote, so what the adapter learns is the same either way.
Each learned sample carries the seq of its frame, so a frame contributes at most one sample: a later
label for the same frame corrects that sample in place, and repeating a label changes nothing.
"""

from __future__ import annotations

import logging
import math
import time
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from device.adapt.labels import LabelQueue, ValidatedLabel, label_refusal
from device.adapt.probation import Probation
from device.adapt.pseudolabel import (
    NEW_CLASS_PREFIX,
    Cluster,
    PseudoLabeler,
    bundle_distances,
    pairwise_distances,
    redundant,
    reference_scale,
)
from device.adapt.quarantine import Quarantine, QuarantinedSample
from device.adapt.store import STATE_FILE, AdapterState, load_state, save_state, saved_snapshot
from device.config import AdaptConfig
from device.errors import StateError
from device.knn import BUNDLE, KNNClassifier
from device.result import Result

log = logging.getLogger(__name__)

Event = dict[str, Any]


class Adapter:
    """Adapts `classifier` (in place) to what the drift brings; see the module docstring."""

    def __init__(
        self,
        classifier: KNNClassifier,
        config: AdaptConfig | None = None,
        clock: Callable[[], float] = time.time,
        known_labels: Sequence[str] = (),
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
        self.counts: Counter[str] = Counter()  # adaptations, rollbacks, rejected_vectors, rejected/ignored_labels
        self.seq = -1  # sequence number of the last observed frame
        self.cooldown_until = -1  # no pseudo-labelling before this sequence number
        self.since_check = 0  # quarantined samples since the last cluster search
        self.guesses: set[int] = set()  # seqs of reference samples a pseudo-label put there, no operator confirmed
        # the classes the bundle shipped (its labels and its reference set as given, before any state is
        # restored: a restored set may have lost every sample of one); any other is a new class
        self.named = np.union1d(self._bundle_classes(), np.asarray(known_labels, dtype=str))
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
            named = not result.label.startswith(NEW_CLASS_PREFIX)
            self.probation.record(result.confidence, agreement, flagged, drifting, named)
        self.quarantine.expire(result.seq)
        if flagged:
            sample = QuarantinedSample(result.seq, vector, result.label, result.confidence, nearest, self._clock())
            self.quarantine.add(sample)
            self.since_check += 1
            if self.config.novel_vote:
                vote = self.novel_vote(vector)
                if vote is not None:
                    result.label, result.confidence = vote
        if self.probation.done:
            return self._judge()
        if len(self.pending) and not self.probation.active:
            return self._apply_pending()
        if self.since_check >= self.config.check_every and result.seq >= self.cooldown_until:
            self.since_check = 0
            return self._pseudo_label()
        return []

    def novel_vote(self, vector: np.ndarray) -> tuple[str, float] | None:
        """The kNN's vote for `vector` among the samples of new classes only (classes the bundle lacks: pseudo-labels
        and the operator's new names); None when there are none, or none within `novel_radius`.

        For a frame the adapter quarantined: its own test says it is unlike the known classes, yet their
        samples fill the reference set and take the plain vote. Only those frames are asked, so it costs
        nothing on a frame that was not, nor on any frame until a new class exists."""
        knn = self.classifier
        labels = knn.labels
        rows = np.flatnonzero(~np.isin(labels, self.named))
        if not len(rows):
            return None
        distances = pairwise_distances(vector[None, :], knn.vectors[rows], knn.metric)[0]
        nearest = np.argsort(distances, kind="stable")[: knn.k]
        if distances[nearest[0]] > self.config.novel_radius * self.scale:
            return None
        scores: dict[str, float] = {}
        for i in nearest.tolist():
            label = str(labels[rows[i]])
            scores[label] = scores.get(label, 0.0) + float(knn.weights[rows[i]]) / (float(distances[i]) + 1e-6)
        best = max(scores, key=scores.__getitem__)
        return best, scores[best] / sum(scores.values())

    def _bundle_classes(self) -> np.ndarray:
        knn = self.classifier
        return np.unique(knn.labels[knn.origins == BUNDLE]) if len(knn) else np.zeros(0, dtype=str)

    def _checked(self, vector: np.ndarray) -> np.ndarray | None:
        """`vector` as float32 (d,); None when not finite; ValueError on a wrong dimension."""
        v = np.asarray(vector, dtype=np.float32)
        if v.shape != (self.classifier.dim,):
            raise ValueError(f"vector has shape {v.shape}, the reference set has dimension {self.classifier.dim}")
        # A finite sum of squares proves every component finite (one dot); only otherwise look closer.
        return v if math.isfinite(float(v.dot(v))) or bool(np.isfinite(v).all()) else None

    # -- heuristic adaptation ---------------------------------------------------------------
    def _pseudo_label(self) -> list[Event]:
        """Name every stable cluster in the quarantine; all of them share one snapshot and one probation."""
        if self._budget() <= 0:  # the operator's labels fill the learned share: no room for guesses
            return []
        seqs, vectors = self.quarantine.stacked()
        clusters = self.pseudo.propose(seqs, vectors, self.scale, self.classifier.metric)
        snapshot = self.classifier.snapshot() if clusters else None
        events = []
        for cluster in clusters:
            named = self.pseudo.name(cluster, self.classifier, self.scale)
            if named is None:
                continue
            event = self._join(cluster, *named)
            if event is not None:
                events.append(event)
            elif named[1] == "new_class":  # no member joined: the name was not used
                self.pseudo.release(named[0])
        if snapshot is not None and events:
            if self.probation.watch is not None:  # a search during a probation: judged with it
                self.probation.watch.events.extend(events)
            else:
                self.probation.start(snapshot, events)
        return events

    def _join(self, cluster: Cluster, label: str, reason: str) -> Event | None:
        """Add the most central members of `cluster` to the reference set as `label`; None when none of them
        may join (all too close to the bundle's samples, or no room): its members leave the quarantine unnamed."""
        cfg = self.config
        rows = list(range(min(cfg.join_size, len(cluster.seqs))))
        if reason == "new_class":  # members close to a known class would take its frames: they stay out
            far = bundle_distances(cluster.vectors[: cfg.join_size], self.classifier) >= cfg.join_distance * self.scale
            rows = [i for i in rows if far[i]]
        rows = rows[: self._make_room(len(rows))]
        joined = [int(cluster.seqs[i]) for i in rows]
        if not joined:
            self.quarantine.remove(cluster.seqs.tolist())
            log.info(
                "cluster of %d samples not pseudo-labelled %s: none of its central members may join",
                len(cluster.seqs),
                label,
            )
            return None
        for i in rows:
            self.classifier.add(cluster.vectors[i], label, origin=int(cluster.seqs[i]), weight=cfg.pseudo_weight)
        self.guesses.update(joined)
        self.quarantine.remove(cluster.seqs.tolist())
        self.pseudo.remember(label, cluster.seqs)
        self.counts["adaptations"] += 1
        members, spread = len(cluster.seqs), round(cluster.spread / self.scale, 4)
        log.info("pseudo-label %s: %d of %d clustered samples joined (%s)", label, len(joined), members, reason)
        return self._event("pseudo_label", label, joined, reason, members=members, spread=spread)

    def _guessed(self) -> np.ndarray:
        """Positions of the reference samples a pseudo-label put there (and no operator has confirmed)."""
        guesses = self.guesses
        positions = [i for i, origin in enumerate(self.classifier.origins.tolist()) if origin in guesses]
        self.guesses = set(self.classifier.origins[positions].tolist())  # forget those evicted meanwhile
        return np.asarray(positions, dtype=np.int64)

    def _budget(self) -> int:
        """Reference samples pseudo-labels may hold: the learned share, less what the operator's labels take."""
        knn = self.classifier
        confirmed = int(np.count_nonzero(knn.origins != BUNDLE)) - len(self._guessed())
        return self._share() - confirmed

    def _make_room(self, n: int, operator: bool = False) -> int:
        """How many of `n` new learned samples fit in the learned share. The most redundant pseudo-labelled
        samples leave to make room, and for an operator's samples, then the most redundant of the
        operator's: they always join, and the bundle's samples keep the rest of the reference set."""
        if not operator:
            n = max(0, min(n, self._budget()))
        self._evict(self._guessed(), n)
        if operator:
            self._evict(np.flatnonzero(self.classifier.origins != BUNDLE), n)
        return n

    def _evict(self, pool: np.ndarray, n: int) -> None:
        """Remove the most redundant samples of `pool` until `n` more learned samples fit in the share."""
        knn = self.classifier
        excess = min(len(pool), int(np.count_nonzero(knn.origins != BUNDLE)) + n - self._share())
        if excess > 0:
            victims = pool[redundant(knn.vectors[pool], excess, knn.metric)]
            self.guesses -= set(knn.origins[victims].tolist())
            knn.remove(victims)

    def _share(self) -> int:
        return int(self.config.learned_share * self.classifier.max_samples)

    def _judge(self) -> list[Event]:
        """End the probation: keep the adaptations, or restore the snapshot taken before them."""
        reason = self.probation.verdict()
        watch = self.probation.finish()
        labels = [str(event["label"]) for event in watch.events]
        if reason is None:
            log.info("pseudo-labels %s kept after %d frames", ", ".join(labels), watch.frames)
            return []
        self.classifier.restore(watch.snapshot)
        self.cooldown_until = self.seq + self.config.cooldown
        self.counts["rollbacks"] += 1
        log.warning("pseudo-labels %s rolled back: %s", ", ".join(labels), reason)
        events = []
        for event in watch.events:
            if event["reason"] == "new_class":
                self.pseudo.forget(str(event["label"]))
            before, after = _rounded(watch.baseline), _rounded(watch.health())
            events.append(self._event("rollback", event["label"], event["seqs"], reason, before=before, after=after))
        return events

    # -- validated labels -------------------------------------------------------------------
    def apply_label(self, seq: int, label: str, vector: np.ndarray | None = None) -> list[Event]:
        """Take the operator's label for frame `seq`; applied now, or after a running probation.

        Never raises on what an operator or the network sent: an unusable label comes back as a
        "label_rejected" event with its reason, and leaves the reference set alone. A frame the device
        never saw (or no longer holds) can be taught only with its vector.
        """
        refused = label_refusal(label)
        if refused is not None:
            return [self._reject(str(label)[:64], seq, refused)]
        if isinstance(seq, bool) or not isinstance(seq, int) or seq < 0:
            return [self._reject(label, None, "bad_seq", given=repr(seq))]
        checked = None
        if vector is not None:
            v = np.asarray(vector, dtype=np.float32)
            if v.shape != (self.classifier.dim,):
                return [self._reject(label, seq, "wrong_dimension", shape=list(v.shape))]
            checked = self._checked(v)
            if checked is None:
                self.counts["rejected_vectors"] += 1
                return [self._event("label_rejected", label, [seq], "non_finite_vector")]
        known = seq in self.quarantine or self.pseudo.owner(seq) is not None or self.classifier.find(seq) is not None
        if checked is None and not known:
            return [self._reject(label, seq, "unknown_seq")]
        replaced = self.pending.put(ValidatedLabel(seq, label, checked))
        events = [] if replaced is None else [self._ignore(replaced.label, seq, "superseded", by=label)]
        return events if self.probation.active else events + self._apply_pending()

    def _apply_pending(self) -> list[Event]:
        """Apply every queued label: name pseudo-labelled clusters, correct learned samples, add new ones."""
        events: list[Event] = []
        added: dict[str, list[tuple[int, np.ndarray]]] = {}
        for item in self.pending.take_all():
            owner = self.pseudo.owner(item.seq)
            renamed = owner is not None and owner != item.label and owner.startswith(NEW_CLASS_PREFIX)
            if renamed:
                assert owner is not None
                events.append(self._relabel(owner, item.label))
            sample = self.quarantine.pop(item.seq)
            position = self.classifier.find(item.seq)
            if position is not None:  # this frame already has its sample: the operator's label is its label
                events += self._settle(position, item.seq, item.label, renamed)
                continue
            vector = sample.vector if sample is not None else item.vector
            if vector is not None:
                added.setdefault(item.label, []).append((item.seq, vector))
            elif owner == item.label:  # a member that did not join, of a cluster that already bears this name
                events.append(self._ignore(item.label, item.seq, "cluster_named"))
            elif not renamed:  # it left the quarantine while the label waited, and no vector came along
                events.append(self._reject(item.label, item.seq, "unknown_seq"))
        for label, rows in added.items():
            self._make_room(len(rows), operator=True)
            for seq, vector in rows:
                self.classifier.add(vector, label, origin=seq, weight=self.config.label_weight)
            self.counts["adaptations"] += 1
            events.append(self._event("validated_label", label, [seq for seq, _ in rows], "operator"))
        return events

    def _settle(self, position: int, seq: int, label: str, renamed: bool) -> list[Event]:
        """The operator's label for a frame whose sample is in the reference set: correct or confirm it."""
        previous = str(self.classifier.labels[position])
        guessed = seq in self.guesses
        if previous == label and not guessed:
            return [] if renamed else [self._ignore(label, seq, "duplicate")]
        self.classifier.relabel(np.asarray([position]), label, weight=self.config.label_weight)
        self.guesses.discard(seq)
        self.counts["adaptations"] += 1
        reason = "correction" if previous != label else "confirmation"
        return [self._event("validated_label", label, [seq], reason, previous=previous)]

    def _relabel(self, old: str, new: str) -> Event:
        """Rename the pseudo-label `old` to the operator's `new` in the reference set."""
        renamed = self.classifier.rename(old, new)
        members = self.pseudo.rename(old, new)
        log.info("pseudo-label %s renamed %s by the operator (%d reference samples)", old, new, renamed)
        return self._event("relabel", new, members, "operator", previous=old, renamed=renamed)

    def _reject(self, label: str, seq: int | None, reason: str, **extra: Any) -> Event:
        self.counts["rejected_labels"] += 1
        log.warning("label %r for seq %s rejected: %s", label, seq, reason)
        return self._event("label_rejected", label, [] if seq is None else [seq], reason, **extra)

    def _ignore(self, label: str, seq: int, reason: str, **extra: Any) -> Event:
        self.counts["ignored_labels"] += 1
        log.info("label %r for seq %d ignored: %s", label, seq, reason)
        return self._event("label_ignored", label, [seq], reason, **extra)

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
            **{
                k: self.counts[k]
                for k in ("adaptations", "rollbacks", "rejected_vectors", "rejected_labels", "ignored_labels")
            },
        }

    # -- state ------------------------------------------------------------------------------
    def to_state(self) -> AdapterState:
        """The reference set, quarantine, pending labels, probation and counters as plain arrays and JSON."""
        knn = self.classifier
        arrays: dict[str, np.ndarray] = {**self.quarantine.to_arrays(), **self.pending.to_arrays(knn.dim)}
        watch = self.probation.watch
        if watch is not None:
            arrays["snap_vectors"] = watch.snapshot.vectors
            arrays["snap_labels"] = watch.snapshot.labels.astype("<U64")
            if watch.snapshot.origins is not None and watch.snapshot.weights is not None:
                arrays["snap_origins"] = watch.snapshot.origins
                arrays["snap_weights"] = watch.snapshot.weights
        arrays["knn_vectors"] = knn.vectors
        arrays["knn_labels"] = knn.labels.astype("<U64")
        arrays["knn_origins"] = knn.origins
        arrays["knn_weights"] = knn.weights
        meta = {
            "dim": knn.dim,
            "scale": self.scale,
            "seq": self.seq,
            "cooldown_until": self.cooldown_until,
            "since_check": self.since_check,
            "guesses": sorted(self.guesses),
            "counts": dict(self.counts),
            "dropped": {"quarantine": self.quarantine.dropped, "pending": self.pending.dropped},
            "pseudo": self.pseudo.to_state(),
            "probation": self.probation.to_state(),
        }
        return AdapterState(arrays, meta)

    def from_state(self, state: AdapterState) -> None:
        """Take back what `to_state` gave (or an older format read by `device.adapt.store`).

        Raises KeyError, ValueError, TypeError or IndexError on inconsistent state."""
        arrays, meta = state.arrays, state.meta
        knn, weight = self.classifier, self.config.label_weight
        shipped = {row.tobytes() for row in knn.vectors[knn.origins == BUNDLE]}
        knn.restore(saved_snapshot(arrays, "knn", shipped, weight))
        self.quarantine.load_arrays(arrays)
        self.pending.load_arrays(arrays)
        self.quarantine.dropped = int(meta["dropped"]["quarantine"])
        self.pending.dropped = int(meta["dropped"]["pending"])
        self.pseudo.load_state(meta["pseudo"])
        snapshot = saved_snapshot(arrays, "snap", shipped, weight) if "snap_vectors" in arrays else None
        self.probation.load_state(meta["probation"], snapshot)
        self.scale = float(meta["scale"])
        self.seq = int(meta["seq"])
        self.cooldown_until = int(meta["cooldown_until"])
        self.since_check = int(meta["since_check"])
        self.guesses = {int(s) for s in meta.get("guesses", [])}  # version 1 and 2: none known
        self.counts.clear()
        self.counts.update({str(k): int(v) for k, v in meta["counts"].items()})

    def save(self, directory: str | Path) -> None:
        """Write the reference set and the adapter's state atomically (see `device.adapt.store`)."""
        save_state(self.to_state(), Path(directory))

    def load(self, directory: str | Path) -> bool:
        """Read state written by `save`; False when there is none, `StateError` when it is unusable."""
        directory = Path(directory)
        state = load_state(directory, self.classifier.dim)
        if state is None:
            return False
        try:
            self.from_state(state)
        except (KeyError, ValueError, TypeError, IndexError) as exc:
            raise StateError(f"{directory / STATE_FILE}: inconsistent adapter state: {exc}") from exc
        return True


def _rounded(health: dict[str, float]) -> dict[str, float]:
    return {k: round(v, 4) for k, v in health.items()}
