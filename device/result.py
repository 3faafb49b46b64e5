"""What the pipeline knows about one frame, shared by the classifier, detectors, adapter and outbox."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from device.knn import Neighbours


@dataclass(slots=True)
class Result:
    """One processed frame. `vector` and `neighbours` come from the single kNN search."""

    seq: int  # per-device sequence number of the frame
    label: str  # kNN prediction
    confidence: float  # share of the distance-weighted kNN vote won by `label`
    model_label: str  # the TFLite model's own arg-max class
    model_confidence: float  # the model's max softmax probability
    probabilities: np.ndarray  # (n_classes,) float32, dequantized
    features: np.ndarray  # (d,) float32 raw feature vector from the model
    vector: np.ndarray  # (k,) float32 after standardize + PCA
    neighbours: Neighbours
    latency_ms: float  # capture-to-decision time of this frame
    true_label: str | None = None  # ground truth when the source has it
    drift: list[str] = field(default_factory=list)  # detectors that fired on this frame
