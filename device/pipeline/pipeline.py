"""The per-frame pipeline: frame -> TFLite -> standardize+PCA -> one kNN search -> detectors -> adapter.

Everything downstream of the interpreter reuses the single neighbour search held in `Result`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from contract.bundle import Bundle, load_bundle, verify_file
from device.adapt import Adapter as KNNAdapter
from device.capture.base import Frame
from device.config import AdaptiveClassifierConfig, Config
from device.errors import BundleError, FrameError, StateError
from device.knn import KNNClassifier
from device.monitor import build_monitor
from device.pipeline.blas import limit_blas_threads
from device.pipeline.extract import Extractor
from device.pipeline.memory import release_free_memory
from device.pipeline.transform import FeatureTransform
from device.result import Result

log = logging.getLogger(__name__)


class Monitor(Protocol):
    @property
    def drifting(self) -> bool: ...

    def update(self, result: Result) -> list[Any]: ...

    def update_label(self, correct: bool, seq: int = -1) -> list[Any]: ...

    def learn_classes(self, classes: Sequence[str]) -> None: ...

    def save(self, path: str | Path) -> None: ...

    def load(self, path: str | Path) -> None: ...


class Adapter(Protocol):
    def observe(self, result: Result, drifting: bool) -> list[dict[str, Any]]: ...

    def apply_label(self, seq: int, label: str, vector: np.ndarray | None = None) -> list[dict[str, Any]]: ...

    def save(self, directory: str | Path) -> None: ...

    def load(self, directory: str | Path) -> bool: ...


def load_classifier(bundle: Bundle, dim: int, cfg: AdaptiveClassifierConfig) -> KNNClassifier:
    """The bundle's kNN reference set, under the configured k, metric and bound."""
    knn = KNNClassifier(k=cfg.k, metric=cfg.metric, max_samples=cfg.max_samples, policy=cfg.policy)
    try:
        return knn.load(bundle.file("knn_state.npz"), dim=dim)
    except StateError as exc:
        raise BundleError(exc.message, bundle.file("knn_state.npz")) from exc


def check_dimensions(bundle: Bundle, extractor: Extractor, transform: FeatureTransform) -> None:
    if transform.input_dim != extractor.feature_dim:
        raise BundleError(
            f"transform.npz expects {transform.input_dim}-d features, the model gives {extractor.feature_dim}",
            bundle.path,
        )


class Pipeline:
    """Turns frames into `Result`s; `monitor` and `adapter` are optional stages."""

    def __init__(
        self,
        bundle: Bundle,
        extractor: Extractor,
        transform: FeatureTransform,
        classifier: KNNClassifier,
        monitor: Monitor | None = None,
        adapter: Adapter | None = None,
    ) -> None:
        check_dimensions(bundle, extractor, transform)
        self.bundle = bundle
        self.extractor = extractor
        self.transform = transform
        self.classifier = classifier
        self.monitor = monitor
        self.adapter = adapter
        self.signals: list[Any] = []  # drift signals (detector, statistic, threshold, seq) of the last frame
        self.events: list[dict[str, Any]] = []  # adaptation events of the last frame
        self._labels = bundle.labels
        self._finite_features = extractor.finite_features  # quantized outputs cannot be NaN or infinite

    @classmethod
    def from_bundle(cls, path: str | Path, config: Config | None = None, *, detect: bool = True,
                    replacing: Pipeline | None = None) -> Pipeline:
        """Load a bundle with the configured classifier, detectors and adapter.

        `replacing`: the pipeline the new one is to take over from. Once the new bundle's files are verified, its
        interpreter and transform are freed before the new ones are built, so the two of each (the largest parts
        of a pipeline) are never in memory together; if the new bundle then fails to load, the old ones are built
        again from their own files (checked against their sha256) and the error is raised as without `replacing`.
        Should that fail too, a `RuntimeError` ends the service rather than leave it running without a model."""
        config = config or Config()
        limit_blas_threads(1)  # numpy's per-frame products run on this thread, off the interpreter's cores
        bundle = load_bundle(path)
        if replacing is not None:
            replacing.extractor.close()
            replacing.transform.close()
        try:
            extractor = Extractor(bundle, num_threads=config.feature_extractor.num_threads)
            transform = FeatureTransform.load(bundle.file("transform.npz"))
            check_dimensions(bundle, extractor, transform)
            classifier = load_classifier(bundle, transform.output_dim, config.adaptive_classifier)
            monitor = adapter = None
            if detect:
                # the configured detectors over the bundle's own drift reference: a new model brings its baseline
                monitor = build_monitor(config.drift_detectors, bundle.drift_reference(), dim=transform.output_dim,
                                        k=config.adaptive_classifier.k)
                adapter = KNNAdapter(classifier, config.adaptation, known_labels=bundle.labels)
        except Exception:
            if replacing is not None:
                replacing.reopen()
            raise
        pipeline = cls(bundle, extractor, transform, classifier, monitor, adapter)
        release_free_memory()  # the load's temporaries, back to the kernel
        return pipeline

    def reopen(self) -> None:
        """Build the interpreter and the transform `from_bundle(..., replacing=self)` freed again, from this
        bundle's files as they were loaded; a `RuntimeError` if it cannot."""
        digests = self.bundle.meta.get("files", {})
        try:
            for name in ("model.tflite", "transform.npz"):
                if name in digests:  # the same sha256 check `load_bundle` made
                    verify_file(self.bundle.file(name), str(digests[name]))
            self.extractor.reopen()
            self.transform.reopen(self.bundle.file("transform.npz"))
        except (BundleError, OSError) as exc:
            raise RuntimeError(f"the running model cannot be loaded again: a file changed since it was loaded, "
                               f"or went ({exc})") from exc

    def process(self, frame: Frame, seq: int) -> Result:
        """Run one frame through every stage; raises `FrameError` for a frame that cannot be used."""
        started = time.perf_counter()
        result = self.classify(frame, seq, *self.extract(frame), started)
        self.observe(result)
        return result

    def extract(self, frame: Frame) -> tuple[np.ndarray, np.ndarray]:
        """The interpreter's (probabilities, features); touches no state but the interpreter's own."""
        return self.extractor(frame.image)

    def infer(self, frame: Frame) -> tuple[np.ndarray, np.ndarray]:
        """`extract` without the dequantization (`extractor.dequantize` finishes it, on any thread)."""
        return self.extractor.run(frame.image)

    def classify(self, frame: Frame, seq: int, probs: np.ndarray, features: np.ndarray, started: float) -> Result:
        """Transform and one kNN search: the decision for the frame (`started` is its perf_counter start)."""
        if not self._finite_features and not np.isfinite(features).all():
            raise FrameError(f"frame {frame.origin or seq}: the model gave non-finite features")
        vector = self.transform(features)
        classifier = self.classifier
        neighbours = classifier.search(vector)
        label, confidence = classifier.vote(neighbours)
        top = int(probs.argmax())
        return Result(
            seq=seq,
            label=label,
            confidence=confidence,
            model_label=self._labels[top],
            model_confidence=float(probs[top]),
            probabilities=probs,
            features=features,
            vector=vector,
            neighbours=neighbours,
            latency_ms=(time.perf_counter() - started) * 1e3,
            true_label=frame.label,
        )

    def observe(self, result: Result) -> None:
        """Detectors and adapter on the decision's single neighbour search; sets `result.drift`."""
        monitor = self.monitor
        if monitor is not None:
            signals = self.signals = monitor.update(result)
            result.drift = [s.detector for s in signals] if signals else []
        drifting = monitor is not None and monitor.drifting
        self.events = self.adapter.observe(result, drifting) if self.adapter is not None else []
        if self.events:
            self.notice_classes()

    def notice_classes(self) -> None:
        """Tell the detectors which classes the classifier knows (an adaptation may have added one)."""
        if self.monitor is not None:
            self.monitor.learn_classes(self.classifier.classes)
