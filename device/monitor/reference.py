"""Reference statistics of a bundle (`drift_reference.json`): the baseline every detector compares to.

Built once at training time from a calibration split that is never streamed, so a new model
brings its own baseline. `check_reference` validates a loaded dict before any detector uses it.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from device.errors import ConfigError
from device.knn import KNNClassifier

VERSION = 1
QUANTILES = (0.05, 0.25, 0.5, 0.75, 0.9, 0.95, 0.99)
_MIN_STD = 1e-9  # a spread below this is treated as zero variance


def _summary(values: np.ndarray) -> dict[str, Any]:
    values = values.astype(np.float64)
    return {
        "mean": float(values.mean()),
        "std": float(values.std(ddof=1)) if len(values) > 1 else 0.0,
        "quantiles": {f"{q:g}": float(np.quantile(values, q)) for q in QUANTILES},
    }


def build_reference(
    reference_vectors: np.ndarray,
    reference_labels: np.ndarray,
    calibration_vectors: np.ndarray,
    calibration_probabilities: np.ndarray,
    k: int = 5,
    metric: str = "euclidean",
) -> dict[str, Any]:
    """Compute the JSON-serialisable drift reference from a calibration split.

    `reference_vectors`/`reference_labels` must be exactly the kNN state shipped in the bundle
    (PCA space); the calibration split must be disjoint from it, so a sample never finds itself.
    """
    ref = np.asarray(reference_vectors, dtype=np.float32)
    cal = np.asarray(calibration_vectors, dtype=np.float32)
    probs = np.asarray(calibration_probabilities, dtype=np.float64)
    if ref.ndim != 2 or cal.ndim != 2 or ref.shape[1] != cal.shape[1]:
        raise ValueError(f"need (n, d) reference and (m, d) calibration vectors: {ref.shape}, {cal.shape}")
    if probs.ndim != 2 or len(probs) != len(cal):
        raise ValueError(f"need (m, classes) calibration probabilities, got {probs.shape} for {len(cal)}")
    if len(cal) < 2 or not (np.all(np.isfinite(cal)) and np.all(np.isfinite(probs))):
        raise ValueError("need at least 2 calibration samples, all finite")
    knn = KNNClassifier(k=k, metric=metric, max_samples=max(len(ref), k)).fit(ref, reference_labels)
    mean_distances = np.empty(len(cal))
    predictions: list[str] = []
    for i, x in enumerate(cal):
        neighbours = knn.search(x)
        mean_distances[i] = float(neighbours.distances.mean())
        predictions.append(knn.vote(neighbours)[0])
    classes = sorted(set(np.asarray(reference_labels).astype(str).tolist()))
    counts = np.array([predictions.count(c) for c in classes], dtype=np.float64)
    return {
        "version": VERSION,
        "n": len(cal),
        "k": k,
        "metric": metric,
        "dim": int(ref.shape[1]),
        "knn_distance": _summary(mean_distances),
        "features": {
            "mean": cal.astype(np.float64).mean(axis=0).tolist(),
            "std": cal.astype(np.float64).std(axis=0, ddof=1).tolist(),
        },
        "confidence": _summary(probs.max(axis=1)),
        "predictions": {"classes": classes, "distribution": (counts / counts.sum()).tolist()},
    }


def _positive(value: Any, what: str) -> float:
    if not isinstance(value, int | float) or not np.isfinite(value):
        raise ConfigError(f"drift reference: {what} must be a finite number, got {value!r}")
    if value <= _MIN_STD:
        raise ConfigError(f"drift reference: {what} has zero variance ({value!r}); rebuild the reference")
    return float(value)


def check_reference(reference: dict[str, Any], dim: int | None = None) -> None:
    """Raise `ConfigError` if `reference` is incomplete, has zero variance, or has the wrong dimension."""
    try:
        _positive(reference["knn_distance"]["std"], "knn_distance.std")
        _positive(reference["confidence"]["std"], "confidence.std")
        means, stds = reference["features"]["mean"], reference["features"]["std"]
        classes = reference["predictions"]["classes"]
        shares = reference["predictions"]["distribution"]
        ref_dim = int(reference["dim"])
    except (KeyError, TypeError) as exc:
        raise ConfigError(f"drift reference is missing or malformed: {exc!r}") from exc
    if len(means) != ref_dim or len(stds) != ref_dim:
        raise ConfigError(f"drift reference: {len(means)}/{len(stds)} feature components, dim {ref_dim}")
    if dim is not None and ref_dim != dim:
        raise ConfigError(f"drift reference has dimension {ref_dim}, the bundle's vectors have {dim}")
    for i, s in enumerate(stds):
        _positive(s, f"features.std[{i}]")
    if not classes or len(classes) != len(shares):
        raise ConfigError(f"drift reference: {len(classes)} classes but {len(shares)} shares")
