"""Heuristic pseudo-labelling: split the quarantine into compact clusters, keep the stable ones, name them.

The split is a greedy density step in the spirit of DBSCAN (Ester et al., KDD 1996), repeated: the
sample with the most quarantined neighbours within a radius seeds a cluster, re-centred on its
medoid; its members leave and the next densest sample seeds the next. A cluster found in `stable_checks`
searches in a row is named. One far from every named class (the bundle's and the operator's) is a new class
("unknown-N"); one close to them on which the kNN agrees extends that class. Pseudo-labels do not
count as named here, and a cluster never joins one: the kNN's agreement with the nearest "unknown-N"
only says that nothing better is near, and merging there mixed new classes.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from dataclasses import dataclass

import numpy as np

from device.config import AdaptConfig
from device.knn import BUNDLE, KNNClassifier

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


def bundle_distances(vectors: np.ndarray, classifier: KNNClassifier) -> np.ndarray:
    """Distance (n,) from each of `vectors` to its nearest reference sample the bundle shipped (inf: none left)."""
    bundle = classifier.vectors[classifier.origins == BUNDLE]
    if len(bundle) == 0:
        return np.full(len(vectors), np.inf)
    return np.asarray(pairwise_distances(vectors, bundle, classifier.metric).min(axis=1))


def redundant(vectors: np.ndarray, count: int, metric: str = "euclidean") -> np.ndarray:
    """Positions of the `count` rows to drop so that those left cover the most: each time, the row nearest
    to another one left (the condensing rule of the class-balanced eviction, over rows of any class)."""
    d = pairwise_distances(vectors, vectors, metric)
    np.fill_diagonal(d, np.inf)
    alive = np.ones(len(vectors), dtype=bool)
    dropped: list[int] = []
    for _ in range(min(count, len(vectors))):
        left = np.flatnonzero(alive)
        victim = int(left[np.argmin(d[left].min(axis=1))])
        dropped.append(victim)
        alive[victim] = False
        d[victim, :] = d[:, victim] = np.inf
    return np.asarray(dropped, dtype=np.int64)


@dataclass(frozen=True, slots=True)
class Cluster:
    """Quarantined samples around one medoid, nearest first."""

    seqs: np.ndarray  # (n,) sequence numbers of the members
    vectors: np.ndarray  # (n, d) their vectors, same order
    spread: float  # mean member distance to the medoid


def _densest(d: np.ndarray, rest: np.ndarray, radius: float, min_size: int) -> np.ndarray | None:
    """Positions (into `d`) of the densest group among `rest` within `radius` of a medoid, nearest first."""
    if len(rest) < min_size:
        return None
    within = d[np.ix_(rest, rest)] <= radius
    counts = within.sum(axis=1)
    seed = int(np.argmax(counts))  # ties go to the oldest sample: deterministic
    if counts[seed] < min_size:
        return None
    members = rest[within[seed]]
    medoid = int(members[int(np.argmin(d[np.ix_(members, members)].sum(axis=1)))])
    members = rest[d[medoid, rest] <= radius]
    if len(members) < min_size:
        return None
    return members[np.argsort(d[medoid, members], kind="stable")]


def _cluster(seqs: np.ndarray, vectors: np.ndarray, d: np.ndarray, order: np.ndarray) -> Cluster:
    return Cluster(seqs=seqs[order], vectors=vectors[order], spread=float(d[order[0], order].mean()))


def find_cluster(
    seqs: np.ndarray, vectors: np.ndarray, radius: float, min_size: int, metric: str = "euclidean"
) -> Cluster | None:
    """The densest group of at least `min_size` samples within `radius` of a medoid, or None."""
    if len(seqs) < min_size:
        return None
    d = pairwise_distances(vectors, vectors, metric)
    order = _densest(d, np.arange(len(seqs)), radius, min_size)
    return None if order is None else _cluster(seqs, vectors, d, order)


def split(
    seqs: np.ndarray, vectors: np.ndarray, radius: float, min_size: int, metric: str = "euclidean"
) -> list[Cluster]:
    """Disjoint clusters, densest first: `find_cluster` again and again on the samples left over."""
    if len(seqs) < min_size:
        return []
    d = pairwise_distances(vectors, vectors, metric)
    rest = np.arange(len(seqs))
    clusters = []
    while (order := _densest(d, rest, radius, min_size)) is not None:
        clusters.append(_cluster(seqs, vectors, d, order))
        rest = np.setdiff1d(rest, order, assume_unique=True)
    return clusters


class PseudoLabeler:
    """Proposes clusters that stay put over consecutive searches, names them, remembers new ones."""

    def __init__(self, config: AdaptConfig) -> None:
        self.config = config
        self.next_id = 1  # number of the next "unknown-N"
        self.clusters: OrderedDict[str, set[int]] = OrderedDict()  # new-class name -> member seqs
        self._candidates: list[tuple[set[int], int]] = []  # last search's clusters and their streaks

    def propose(self, seqs: np.ndarray, vectors: np.ndarray, scale: float, metric: str) -> list[Cluster]:
        """Search the quarantine; each cluster is returned once it was found `stable_checks` times in a row."""
        cfg = self.config
        ready, candidates = [], []
        for cluster in split(seqs, vectors, cfg.cluster_radius * scale, cfg.min_cluster, metric):
            members = set(cluster.seqs.tolist())
            streak = 1 + max(
                (n for old, n in self._candidates if len(old & members) >= cfg.stable_overlap * len(old)), default=0
            )
            if streak >= cfg.stable_checks:
                ready.append(cluster)
            else:
                candidates.append((members, streak))
        self._candidates = candidates
        return ready

    def name(self, cluster: Cluster, classifier: KNNClassifier, scale: float) -> tuple[str, str] | None:
        """(label, reason) for `cluster`: a new "unknown-N", a class to extend, or None when ambiguous."""
        cfg = self.config
        named = np.char.find(classifier.labels.astype(str), NEW_CLASS_PREFIX) != 0
        nearest = pairwise_distances(cluster.vectors, classifier.vectors[named], classifier.metric).min(axis=1)
        if float(np.median(nearest)) > cfg.new_class_distance * scale:  # far from every named class
            name = f"{NEW_CLASS_PREFIX}{self.next_id}"
            self.next_id += 1
            return name, "new_class"
        votes = [classifier.predict(vector)[0] for vector in cluster.vectors]
        labels, counts = np.unique(np.asarray(votes), return_counts=True)
        best = int(np.argmax(counts))
        top = str(labels[best])
        if counts[best] >= cfg.agreement * len(votes) and not top.startswith(NEW_CLASS_PREFIX):
            return top, "known_class"
        log.info("cluster of %d samples is near the named classes but the kNN disagrees on it", len(votes))
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

    def release(self, label: str) -> None:
        """Give back the number of the new class `label` just named, when it was not used after all."""
        if label == f"{NEW_CLASS_PREFIX}{self.next_id - 1}" and label not in self.clusters:
            self.next_id -= 1

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
        return {
            "next_id": self.next_id,
            "clusters": {k: sorted(v) for k, v in self.clusters.items()},
            "candidates": [[sorted(members), streak] for members, streak in self._candidates],
        }

    def load_state(self, state: dict[str, object]) -> None:
        next_id, clusters, candidates = state["next_id"], state["clusters"], state.get("candidates", [])
        if not isinstance(next_id, int) or not isinstance(clusters, dict) or not isinstance(candidates, list):
            raise ValueError("pseudo-labeller state must hold an integer next_id, a clusters object, a candidates list")
        self.next_id = next_id
        self.clusters = OrderedDict((str(k), {int(s) for s in v}) for k, v in clusters.items())
        self._candidates = [({int(s) for s in members}, int(streak)) for members, streak in candidates]
