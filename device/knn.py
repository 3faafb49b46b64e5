"""Adaptive kNN over a bounded, labelled reference set: one vectorised search per frame.

The search result (`Neighbours`) is shared by the classifier's vote and by every drift
detector, so a frame costs exactly one pass over the reference set. Each sample remembers its
origin (the bundle shipped it, or the device learned it from a frame, by sequence number) and the
weight of its vote: a learned sample may count for less than the bundle's curated ones.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from device.config import METRICS, POLICIES
from device.errors import StateError
from device.state import save_npz_atomic


@dataclass(frozen=True, slots=True)
class Neighbours:
    """The k nearest reference samples of one query, nearest first."""

    distances: np.ndarray  # (k,) float32
    indices: np.ndarray  # (k,) positions in the reference set
    labels: tuple[str, ...]  # (k,) their labels


BUNDLE = -1  # origin of a sample the bundle shipped
LEARNED = -2  # origin of a sample learned from a frame no longer known (state saved before origins were kept)


@dataclass(frozen=True, slots=True)
class Snapshot:
    """A copy of the reference set, to roll an adaptation back."""

    vectors: np.ndarray
    labels: np.ndarray
    origins: np.ndarray | None = None  # (n,) int64: a frame's seq, BUNDLE or LEARNED; None: all BUNDLE
    weights: np.ndarray | None = None  # (n,) float32 vote weights; None: all 1


class KNNClassifier:
    """k-nearest-neighbour classifier with distance-weighted votes and a bounded memory."""

    def __init__(
        self,
        k: int = 5,
        metric: str = "euclidean",
        max_samples: int = 200,
        policy: str = "class_balanced",
        seed: int = 0,
    ) -> None:
        if k < 1:
            raise ValueError(f"k must be >= 1, got {k}")
        if metric not in METRICS:
            raise ValueError(f"metric must be one of {METRICS}, got {metric!r}")
        if max_samples < k:
            raise ValueError(f"max_samples must be >= k ({k}), got {max_samples}")
        if policy not in POLICIES:
            raise ValueError(f"policy must be one of {POLICIES}, got {policy!r}")
        self.k = k
        self.metric = metric
        self.max_samples = max_samples
        self.policy = policy
        self.seed = seed
        self._rng = np.random.default_rng(seed)
        self._classes: list[str] = []
        self._vectors = np.zeros((0, 0), dtype=np.float32)
        self._codes = np.zeros(0, dtype=np.int64)
        self._age = np.zeros(0, dtype=np.int64)  # insertion order, for fifo
        self._origins = np.zeros(0, dtype=np.int64)  # a frame's seq, BUNDLE or LEARNED, per sample
        self._aux = np.zeros(0, dtype=np.float32)  # squared norms (euclidean) or norms (cosine)
        self._clock = 0
        self._weights = np.zeros(0, dtype=np.float32)  # vote weight per sample
        self._uniform = True  # every weight is 1: the vote skips them
        self._weight_list: list[float] = []  # the weights as floats, read by the vote (cheaper than numpy there)

    # -- state ---------------------------------------------------------------------------
    @property
    def dim(self) -> int:
        return int(self._vectors.shape[1])

    def __len__(self) -> int:
        return int(self._vectors.shape[0])

    @property
    def classes(self) -> tuple[str, ...]:
        """Every class the reference set has held (learned ones included), in the order they came."""
        return tuple(self._classes)

    @property
    def labels(self) -> np.ndarray:
        """Labels of the reference set, in storage order."""
        return np.asarray(self._classes, dtype=str)[self._codes] if len(self) else np.zeros(0, dtype=str)

    @property
    def vectors(self) -> np.ndarray:
        return self._vectors

    @property
    def origins(self) -> np.ndarray:
        """Where each sample came from, in storage order: a frame's seq, `BUNDLE` or `LEARNED`."""
        return self._origins

    @property
    def weights(self) -> np.ndarray:
        """The weight of each sample's vote, in storage order (1 for the bundle's)."""
        return self._weights

    def fit(
        self,
        vectors: np.ndarray,
        labels: np.ndarray,
        origins: np.ndarray | None = None,
        weights: np.ndarray | None = None,
    ) -> KNNClassifier:
        """Replace the reference set; keeps at most `max_samples`, balanced across classes."""
        vectors = np.asarray(vectors, dtype=np.float32)
        labels = np.asarray(labels).astype(str)
        if vectors.ndim != 2 or len(vectors) != len(labels):
            raise ValueError(f"need (n, d) vectors and n labels, got {vectors.shape} and {labels.shape}")
        if len(vectors) < self.k:
            raise ValueError(f"need at least k={self.k} reference samples, got {len(vectors)}")
        origins = np.full(len(labels), BUNDLE, np.int64) if origins is None else np.array(origins, np.int64)
        weights = np.ones(len(labels), np.float32) if weights is None else np.array(weights, np.float32)
        if origins.shape != labels.shape or weights.shape != labels.shape:
            raise ValueError(f"need n origins and weights for n samples, got {origins.shape}, {weights.shape}")
        if not np.all((weights > 0) & (weights <= 1)):
            raise ValueError("vote weights must be within (0, 1]")
        self._classes = sorted(set(labels.tolist()))
        codes = np.searchsorted(np.asarray(self._classes), labels)
        self._set(np.ascontiguousarray(vectors), codes, origins, weights)
        while len(self) > self.max_samples:
            self._evict()
        return self

    def _set(self, vectors: np.ndarray, codes: np.ndarray, origins: np.ndarray, weights: np.ndarray) -> None:
        self._vectors = vectors
        self._codes = codes.astype(np.int64)
        self._origins = origins
        self._weights = weights
        self._age = np.arange(self._clock, self._clock + len(codes), dtype=np.int64)
        self._clock += len(codes)
        self._refresh_aux()
        self._refresh_weights()

    def _refresh_aux(self) -> None:
        if self.metric == "euclidean":
            self._aux = np.einsum("ij,ij->i", self._vectors, self._vectors)
        elif self.metric == "cosine":
            self._aux = np.maximum(np.linalg.norm(self._vectors, axis=1), 1e-12).astype(np.float32)

    def _refresh_weights(self) -> None:
        self._uniform = bool(np.all(self._weights == 1.0))
        self._weight_list = [] if self._uniform else self._weights.tolist()

    # -- search and vote -----------------------------------------------------------------
    def search(self, x: np.ndarray) -> Neighbours:
        """The k nearest reference samples of `x` (one pass over the reference set)."""
        dim = self._vectors.shape[1]
        if x.shape != (dim,):
            raise ValueError(f"query has shape {x.shape}, the reference set has dimension {dim}")
        # Rank by a key monotone in the distance; finish the distance for the k winners only.
        # In place where the result is bit-identical: this runs once per frame, right after `invoke`.
        if self.metric == "euclidean":
            key = self._vectors.dot(x)
            key *= -2.0
            key += self._aux
        elif self.metric == "manhattan":
            key = np.abs(self._vectors - x).sum(axis=1)
        else:
            key = -self._vectors.dot(x) / self._aux
        # One stable sort of a few hundred keys costs less than a partition plus a sort of the winners,
        # and settles exact ties (duplicate reference samples) by position.
        idx = key.argsort(kind="stable")[: self.k]
        top = key[idx]
        if self.metric == "euclidean":
            top += float(x.dot(x))
            np.maximum(top, 0.0, out=top)
            np.sqrt(top, out=top)
        elif self.metric == "cosine":
            top = 1.0 + top / max(float(np.linalg.norm(x)), 1e-12)
        classes = self._classes
        names = tuple([classes[c] for c in self._codes[idx].tolist()])
        return Neighbours(distances=top.astype(np.float32, copy=False), indices=idx, labels=names)

    def vote(self, neighbours: Neighbours) -> tuple[str, float]:
        """Distance-weighted majority vote: (label, share of the vote it won); ties go to the nearer class.

        Each neighbour's vote is scaled by its sample's weight: where a class the device learned overlaps
        one the bundle was trained on, the bundle's curated samples keep the edge.
        """
        scores: dict[str, float] = {}
        if self._uniform:
            for label, dist in zip(neighbours.labels, neighbours.distances.tolist(), strict=True):
                scores[label] = scores.get(label, 0.0) + 1.0 / (dist + 1e-6)
        else:
            weights, rows = self._weight_list, neighbours.indices.tolist()
            for label, dist, i in zip(neighbours.labels, neighbours.distances.tolist(), rows, strict=True):
                scores[label] = scores.get(label, 0.0) + weights[i] / (dist + 1e-6)
        best = max(scores, key=scores.__getitem__)
        return best, scores[best] / sum(scores.values())

    def predict(self, x: np.ndarray) -> tuple[str, float]:
        return self.vote(self.search(x))

    # -- adaptation ----------------------------------------------------------------------
    def add(self, vector: np.ndarray, label: str, origin: int = LEARNED, weight: float = 1.0) -> None:
        """Add one labelled sample learned from frame `origin`; when full, evict one by the replacement policy."""
        if not 0 < weight <= 1:
            raise ValueError(f"vote weight must be within (0, 1], got {weight!r}")
        vector = np.asarray(vector, dtype=np.float32).reshape(1, -1)
        if vector.shape[1] != self.dim:
            raise ValueError(f"sample has dimension {vector.shape[1]}, the reference set has {self.dim}")
        if label not in self._classes:
            self._classes.append(label)
        code = self._classes.index(label)
        self._vectors = np.concatenate([self._vectors, vector])
        self._codes = np.append(self._codes, code)
        self._age = np.append(self._age, self._clock)
        self._origins = np.append(self._origins, np.int64(origin))
        self._weights = np.append(self._weights, np.float32(weight))
        self._clock += 1
        self._refresh_aux()
        if len(self) > self.max_samples:
            self._evict(protect=len(self) - 1)
        else:
            self._refresh_weights()

    def find(self, origin: int) -> int | None:
        """Position of the sample learned from frame `origin` (>= 0), or None when there is none."""
        hits = np.flatnonzero(self._origins == origin)
        return int(hits[0]) if origin >= 0 and len(hits) else None

    def relabel(self, positions: np.ndarray, label: str, weight: float | None = None) -> None:
        """Give the samples at `positions` the label `label` (and the vote weight `weight`, if given)."""
        if label not in self._classes:
            self._classes.append(label)
        positions = np.asarray(positions, dtype=np.int64)
        self._codes[positions] = self._classes.index(label)
        if weight is not None:
            self._weights[positions] = weight
            self._refresh_weights()

    def remove(self, positions: np.ndarray) -> None:
        """Drop the samples at `positions` (the set may fall below `k` only if the caller lets it)."""
        keep = np.ones(len(self), dtype=bool)
        keep[np.asarray(positions, dtype=np.int64)] = False
        self._keep(keep)

    def rename(self, old: str, new: str) -> int:
        """Move every sample of class `old` to class `new`; returns how many moved."""
        if old not in self._classes:
            return 0
        positions = np.flatnonzero(self._codes == self._classes.index(old))
        self.relabel(positions, new)
        return len(positions)

    def _evict(self, protect: int = -1) -> None:
        """Drop one sample: the oldest (fifo), a random one, or the most redundant of the largest class."""
        n = len(self)
        if self.policy == "fifo":
            order = np.argsort(self._age)
            victim = int(order[0] if order[0] != protect else order[1])
        elif self.policy == "random":
            victim = int(self._rng.integers(n - 1 if protect == n - 1 else n))
        else:
            victim = self._most_redundant(protect)
        keep = np.ones(n, dtype=bool)
        keep[victim] = False
        self._keep(keep)

    def _keep(self, keep: np.ndarray) -> None:
        self._vectors = np.ascontiguousarray(self._vectors[keep])
        self._codes, self._age, self._origins = self._codes[keep], self._age[keep], self._origins[keep]
        self._weights = self._weights[keep]
        self._refresh_aux()
        self._refresh_weights()

    def _most_redundant(self, protect: int) -> int:
        """In the largest class, the sample closest to another member of its class (condensing)."""
        counts = np.bincount(self._codes, minlength=len(self._classes))
        members = np.flatnonzero(self._codes == int(np.argmax(counts)))
        members = members[members != protect]
        x = self._vectors[members]
        d2 = np.einsum("ij,ij->i", x, x)[:, None] - 2 * x @ x.T + np.einsum("ij,ij->i", x, x)[None, :]
        np.fill_diagonal(d2, np.inf)
        return int(members[int(np.argmin(d2.min(axis=1)))])

    def snapshot(self) -> Snapshot:
        return Snapshot(self._vectors.copy(), self.labels.copy(), self._origins.copy(), self._weights.copy())

    def restore(self, snapshot: Snapshot) -> None:
        self.fit(snapshot.vectors, snapshot.labels, snapshot.origins, snapshot.weights)

    # -- persistence ---------------------------------------------------------------------
    def save(self, path: str | Path) -> None:
        """Write the reference set atomically as `.npz` (vectors, labels)."""
        save_npz_atomic(path, vectors=self._vectors, labels=self.labels.astype("<U64"))

    def load(self, path: str | Path, dim: int | None = None) -> KNNClassifier:
        """Read a reference set; `dim` is the dimension the transform produces."""
        try:
            with np.load(path, allow_pickle=False) as npz:
                vectors, labels = npz["vectors"], npz["labels"]
        except (OSError, KeyError, ValueError) as exc:
            raise StateError(f"cannot read kNN state: {exc}", path) from exc
        if vectors.ndim != 2:
            raise StateError(f"kNN vectors must be 2-D, got shape {vectors.shape}", path)
        if dim is not None and vectors.shape[1] != dim:
            raise StateError(f"kNN state has dimension {vectors.shape[1]}, the transform gives {dim}", path)
        try:
            return self.fit(vectors, labels)
        except ValueError as exc:
            raise StateError(str(exc), path) from exc
