"""Heuristic pseudo-labelling: find a stable, compact cluster among quarantined samples and name it.

The search is a single-seed density step in the spirit of DBSCAN (Ester et al., KDD 1996): the
sample with the most quarantined neighbours within a radius seeds the cluster, which is then
re-centred on its medoid. A cluster far from the reference set is a new class ("unknown-N");
one close to it, on which the kNN agrees, extends the class the kNN already predicts.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from dataclasses import dataclass

import numpy as np

from device.adapt.config import AdaptConfig
from device.pipeline.knn import KNNClassifier

log = logging.getLogger(__name__)

NEW_CLASS_PREFIX = "unknown-"


def pairwise_distances(a: np.ndarray, b: np.ndarray, metric: str = "euclidean") -> np.ndarray:
    """Distances (n, m) between rows of `a` (n, d) and `b` (m, d) under the kNN's metric."""
    a64, b64 = a.astype(np.float64), b.astype(np.float64)
    if metric == "manhattan":
        return np.abs(a64[:, None, :] - b64[None, :, :]).sum(axis=2)
    if metric == "cosine":
        na = np.maximum(np.linalg.norm(a64, axis=1), 1e-12)
        nb = np.maximum(np.linalg.norm(b64, axis=1), 1e-12)
        return np.asarray(1.0 - (a64 @ b64.T) / (na[:, None] * nb[None, :]))
    d2 = np.einsum("ij,ij->i", a64, a64)[:, None] - 2.0 * a64 @ b64.T + np.einsum("ij,ij->i", b64, b64)[None, :]
    return np.asarray(np.sqrt(np.maximum(d2, 0.0)))


def reference_scale(classifier: KNNClassifier, quantile: float) -> float:
    """The `quantile` of nearest-neighbour distances inside the reference set: "how far is near"."""
    x = classifier.vectors
    if len(x) < 2:
        return 1.0
    d = pairwise_distances(x, x, classifier.metric)
    np.fill_diagonal(d, np.inf)
    scale = float(np.quantile(d.min(axis=1), quantile))
    return scale if scale > 0 else 1.0


@dataclass(frozen=True, slots=True)
class Cluster:
    """Quarantined samples around one medoid, nearest first."""

    seqs: np.ndarray  # (n,) sequence numbers of the members
    vectors: np.ndarray  # (n, d) their vectors, same order
    spread: float  # mean member distance to the medoid


def find_cluster(
    seqs: np.ndarray, vectors: np.ndarray, radius: float, min_size: int, metric: str = "euclidean"
) -> Cluster | None:
    """The densest group of at least `min_size` samples within `radius` of a medoid, or None."""
    if len(seqs) < min_size:
        return None
    d = pairwise_distances(vectors, vectors, metric)
    within = d <= radius
    counts = within.sum(axis=1)
    seed = int(np.argmax(counts))  # ties go to the oldest sample: deterministic
    if counts[seed] < min_size:
        return None
    members = np.flatnonzero(within[seed])
    medoid = int(members[int(np.argmin(d[np.ix_(members, members)].sum(axis=1)))])
    members = np.flatnonzero(within[medoid])
    if len(members) < min_size:
        return None
    order = members[np.argsort(d[medoid, members], kind="stable")]
    return Cluster(seqs=seqs[order], vectors=vectors[order], spread=float(d[medoid, order].mean()))


class PseudoLabeler:
    """Proposes clusters that stay put over consecutive searches, names them, remembers new ones."""

    def __init__(self, config: AdaptConfig) -> None:
        self.config = config
        self.next_id = 1  # number of the next "unknown-N"
        self.clusters: OrderedDict[str, set[int]] = OrderedDict()  # new-class name -> member seqs
        self._candidate: set[int] = set()
        self._streak = 0

    def propose(self, seqs: np.ndarray, vectors: np.ndarray, scale: float, metric: str) -> Cluster | None:
        """Search the quarantine; a cluster is returned once it was found `stable_checks` times in a row."""
        cfg = self.config
        cluster = find_cluster(seqs, vectors, cfg.cluster_radius * scale, cfg.min_cluster, metric)
        if cluster is None:
            self._candidate, self._streak = set(), 0
            return None
        members = set(cluster.seqs.tolist())
        kept = len(self._candidate & members)
        stable = bool(self._candidate) and kept >= cfg.stable_overlap * len(self._candidate)
        self._streak = self._streak + 1 if stable else 1
        self._candidate = members
        if self._streak < cfg.stable_checks:
            return None
        self._candidate, self._streak = set(), 0
        return cluster

    def name(self, cluster: Cluster, classifier: KNNClassifier, scale: float) -> tuple[str, str] | None:
        """(label, reason) for `cluster`: a new "unknown-N", a known class, or None when ambiguous."""
        cfg = self.config
        nearest, votes = [], []
        for vector in cluster.vectors:
            neighbours = classifier.search(vector)
            nearest.append(float(neighbours.distances[0]))
            votes.append(classifier.vote(neighbours)[0])
        if float(np.median(nearest)) > cfg.new_class_distance * scale:
            name = f"{NEW_CLASS_PREFIX}{self.next_id}"
            self.next_id += 1
            return name, "new_class"
        labels, counts = np.unique(np.asarray(votes), return_counts=True)
        best = int(np.argmax(counts))
        if counts[best] >= cfg.agreement * len(votes):
            return str(labels[best]), "known_class"
        log.info("cluster of %d samples is near the reference but the kNN disagrees on it", len(votes))
        return None

    def remember(self, label: str, seqs: np.ndarray) -> None:
        """Record the members of a pseudo-labelled new class, so an operator label can rename it."""
        if label in self.clusters:
            self.clusters[label] = self._newest(self.clusters[label] | {int(s) for s in seqs})
        elif label.startswith(NEW_CLASS_PREFIX):
            self.clusters[label] = {int(s) for s in seqs}
            while len(self.clusters) > self.config.max_clusters:
                self.clusters.popitem(last=False)

    def owner(self, seq: int) -> str | None:
        """The pseudo-label whose cluster held `seq`, if any."""
        return next((name for name, seqs in self.clusters.items() if seq in seqs), None)

    def forget(self, label: str) -> None:
        self.clusters.pop(label, None)

    def rename(self, old: str, new: str) -> list[int]:
        """Move the record of `old` to the operator's name `new`; returns its members."""
        members = self.clusters.pop(old, set())
        self.clusters[new] = self._newest(self.clusters.get(new, set()) | members)
        return sorted(members)

    def _newest(self, members: set[int]) -> set[int]:
        """Bound a record: the newest members are the ones an operator is still likely to label."""
        return set(sorted(members)[-self.config.quarantine_size :])

    def to_state(self) -> dict[str, object]:
        return {"next_id": self.next_id, "clusters": {k: sorted(v) for k, v in self.clusters.items()}}

    def load_state(self, state: dict[str, object]) -> None:
        next_id, clusters = state["next_id"], state["clusters"]
        if not isinstance(next_id, int) or not isinstance(clusters, dict):
            raise ValueError("pseudo-labeller state must hold an integer next_id and a clusters object")
        self.next_id = next_id
        self.clusters = OrderedDict((str(k), {int(s) for s in v}) for k, v in clusters.items())
        self._candidate, self._streak = set(), 0
