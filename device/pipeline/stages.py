"""Builds the pipeline's optional stages (detectors, adapter) from the bundle and the configuration."""

from __future__ import annotations

from contract.bundle import Bundle
from device.adapt import AdaptConfig, Adapter
from device.config import Config
from device.errors import ConfigError
from device.knn import KNNClassifier
from device.monitor import Monitor, build_monitor


def build_detectors(bundle: Bundle, config: Config, dim: int) -> Monitor:
    """The configured detectors over the bundle's own drift reference (a new model brings its baseline)."""
    return build_monitor(config.drift_detectors, bundle.drift_reference(), dim=dim, k=config.adaptive_classifier.k)


def build_adapter(classifier: KNNClassifier, config: Config) -> Adapter:
    try:
        adapt_config = AdaptConfig(**config.adaptation)
    except TypeError as exc:
        raise ConfigError(f"adaptation: {exc}") from exc
    except ValueError as exc:
        raise ConfigError(str(exc)) from exc
    return Adapter(classifier, adapt_config)
