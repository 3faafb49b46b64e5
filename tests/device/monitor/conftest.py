"""Factories for the monitor tests: a synthetic drift reference and `Result`s built from signals."""

from collections.abc import Callable

import numpy as np
import pytest

from device.knn import Neighbours
from device.monitor.reference import build_reference
from device.result import Result

DIM = 4
CLASSES = ("a", "b", "c")


@pytest.fixture(scope="module")
def reference() -> dict:
    """A reference over three Gaussian blobs in 4-d, from a seeded calibration split."""
    rng = np.random.default_rng(0)
    centres = np.eye(3, DIM) * 4.0
    labels = np.repeat(CLASSES, 40)
    vectors = centres[np.repeat(np.arange(3), 40)] + rng.normal(size=(120, DIM))
    cal_codes = rng.integers(0, 3, 90)
    calibration = centres[cal_codes] + rng.normal(size=(90, DIM))
    probabilities = rng.dirichlet([1.0, 1.0, 8.0], size=90)
    return build_reference(vectors, labels, calibration, probabilities, k=5)


ResultFactory = Callable[..., Result]


@pytest.fixture
def make_result(reference: dict) -> ResultFactory:
    """`make_result(seq, knn=z, confidence=z, vector=..., label=...)`: signals given in reference σ."""

    def make(
        seq: int,
        knn: float = 0.0,
        confidence: float = 0.0,
        vector: np.ndarray | None = None,
        label: str = "a",
    ) -> Result:
        mean = reference["knn_distance"]["mean"] + knn * reference["knn_distance"]["std"]
        conf = reference["confidence"]["mean"] + confidence * reference["confidence"]["std"]
        if vector is None:
            vector = np.asarray(reference["features"]["mean"], dtype=np.float32)
        return Result(
            seq=seq,
            label=label,
            confidence=1.0,
            model_label=label,
            model_confidence=conf,
            probabilities=np.zeros(3, dtype=np.float32),
            features=np.zeros(8, dtype=np.float32),
            vector=np.asarray(vector, dtype=np.float32),
            neighbours=Neighbours(np.full(5, mean, dtype=np.float32), np.arange(5), ("a",) * 5),
            latency_ms=0.0,
        )

    return make
