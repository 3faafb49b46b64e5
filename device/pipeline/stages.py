"""Builds the pipeline's optional stages (detectors, adapter) from the bundle and the configuration."""

from __future__ import annotations

from contract.bundle import Bundle
from device.adapt import Adapter
from device.config import Config
from device.knn import KNNClassifier
from device.monitor import Monitor, build_monitor


def build_detectors(bundle: Bundle, config: Config, dim: int) -> Monitor:
    """The configured detectors over the bundle's own drift reference (a new model brings its baseline)."""
    return build_monitor(config.drift_detectors, bundle.drift_reference(), dim=dim, k=config.adaptive_classifier.k)


def build_adapter(classifier: KNNClassifier, config: Config) -> Adapter:
    """The adapter over `classifier`, under the `adaptation` section (validated when the file was parsed)."""
    return Adapter(classifier, config.adaptation)
