"""Seeded synthetic worlds for the adapter tests: Gaussian classes in a small PCA-like space, no model."""

from __future__ import annotations

import numpy as np

from device.adapt import AdaptConfig
from device.knn import KNNClassifier
from device.result import Result

DIM = 8
DRIFT = 40  # in `stream`, frames 0..39 are classes 0-5; from 40 on the new classes 6 and 7 alternate
CONFIG = AdaptConfig(  # small windows for short streams; distances for well-separated Gaussians
    min_cluster=6,
    join_size=4,
    check_every=5,
    window=20,
    probation=20,
    cooldown=30,
    quarantine_size=64,
    max_age=200,
    scale_quantile=0.9,
    novelty_distance=1.5,
    new_class_distance=1.5,
    min_confidence=0.6,
    cluster_radius=1.0,
    max_growth=1.0,
    pseudo_weight=0.9,  # below the bundle's 1: the tests see that the weight reaches the reference set
)
KNOWN = tuple(str(c) for c in range(6))  # classes of the reference set
NEW = tuple(str(c) for c in range(6, 10))  # classes that appear with the drift


class World:
    """Ten well-separated Gaussian classes; the kNN is fitted on the first six."""

    def __init__(self, seed: int = 0, spread: float = 0.3, per_class: int = 20, max_samples: int = 120) -> None:
        self.rng = np.random.default_rng(seed)
        self.spread = spread
        self.centres = self.rng.normal(0.0, 2.0, size=(10, DIM)).astype(np.float32)
        vectors = np.stack([self.draw(c) for c in KNOWN for _ in range(per_class)])
        labels = np.repeat(np.asarray(KNOWN), per_class)
        self.knn = KNNClassifier(k=5, max_samples=max_samples).fit(vectors, labels)

    def draw(self, cls: str) -> np.ndarray:
        noise = self.rng.normal(0.0, self.spread, DIM)
        return (self.centres[int(cls)] + noise).astype(np.float32)

    def result(self, seq: int, cls: str, vector: np.ndarray | None = None) -> Result:
        """What the pipeline would report for one frame of class `cls`."""
        vector = self.draw(cls) if vector is None else vector
        neighbours = self.knn.search(vector)
        label, confidence = self.knn.vote(neighbours)
        return Result(
            seq,
            label,
            confidence,
            label,
            confidence,
            np.zeros(0, np.float32),
            vector,
            vector,
            neighbours,
            0.0,
            true_label=cls,
        )


def true_class(seq: int) -> str:
    return str(seq % 6) if seq < DRIFT else ("6" if seq % 2 else "7")
