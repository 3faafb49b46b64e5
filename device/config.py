"""The appliance's JSON configuration, validated into dataclasses before anything starts.

Sections follow TinyLCM's (`feature_extractor`, `feature_transformation`, `adaptive_classifier`,
`drift_detectors`) plus `adaptation`, `device`, `camera`, `sync` and `outbox`. Every field has a
default, so `{}` is a valid configuration; an unknown key or a wrong type is a `ConfigError`
naming the key and the file.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field, fields, is_dataclass
from pathlib import Path
from typing import Any, get_type_hints

import dacite

from device.errors import ConfigError


def _positive(section: str, **values: float) -> None:
    for key, value in values.items():
        if value <= 0:
            raise ValueError(f"{section}.{key} must be > 0, got {value}")


@dataclass
class FeatureExtractorConfig:
    type: str = "tflite"  # the only extractor: a TFLite model from the bundle
    bundle: str = "models/current"  # bundle directory; relative paths are under device.data_dir
    num_threads: int = 2  # interpreter threads (the Pi Zero 2W has 4 cores; inference shares them)

    def __post_init__(self) -> None:
        if self.type != "tflite":
            raise ValueError(f"feature_extractor.type must be 'tflite', got {self.type!r}")
        _positive("feature_extractor", num_threads=self.num_threads)


@dataclass
class FeatureTransformationConfig:
    type: str = "standard_scaler_pca"  # arrays from the bundle's transform.npz

    def __post_init__(self) -> None:
        if self.type != "standard_scaler_pca":
            raise ValueError(f"feature_transformation.type must be 'standard_scaler_pca', got {self.type!r}")


# what device.pipeline.knn implements; defined here so that validating a config (the updater does too)
# never imports numpy
METRICS = ("euclidean", "manhattan", "cosine")
POLICIES = ("class_balanced", "fifo", "random")


@dataclass
class AdaptiveClassifierConfig:
    type: str = "knn"
    k: int = 5  # neighbours per vote
    metric: str = "euclidean"  # euclidean | manhattan | cosine
    max_samples: int = 200  # bound of the reference set
    policy: str = "class_balanced"  # replacement when full: class_balanced | fifo | random

    def __post_init__(self) -> None:
        if self.type != "knn":
            raise ValueError(f"adaptive_classifier.type must be 'knn', got {self.type!r}")
        if self.metric not in METRICS:
            raise ValueError(f"adaptive_classifier.metric must be one of {METRICS}, got {self.metric!r}")
        if self.policy not in POLICIES:
            raise ValueError(f"adaptive_classifier.policy must be one of {POLICIES}, got {self.policy!r}")
        _positive("adaptive_classifier", k=self.k, max_samples=self.max_samples)
        if self.max_samples < self.k:
            raise ValueError(f"adaptive_classifier.max_samples ({self.max_samples}) must be >= k ({self.k})")


@dataclass
class DeviceConfig:
    name: str = ""  # shown on the server; defaults to the hostname
    data_dir: str = "/data"  # the state volume: outbox, models, state, tuf
    health_port: int = 8321  # /healthz and /metrics on 127.0.0.1
    overlap: bool | None = None  # decide and observe frame N on a thread while the interpreter runs frame N+1;
    # None: on when a core is free beside the interpreter's threads (a Pi Zero 2W: 4 cores, 2 threads)
    log_level: str = "INFO"


def overlap_enabled(config: Config) -> bool:
    """`device.overlap`, or when it is unset: whether this process may use a core beside the interpreter's threads."""
    if config.device.overlap is not None:
        return config.device.overlap
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return cores > config.feature_extractor.num_threads


@dataclass
class CameraConfig:
    source: str = "camera"  # camera | dir:PATH | digits
    fps: float = 5.0  # frames per second asked of the camera
    drift: str | None = None  # inject a drift (testing only), e.g. "unseen@300"
    seed: int = 0  # seed of synthetic sources and drift injection
    realtime: bool = False  # pace dir:/digits sources to `fps` (default: as fast as the pipeline runs)

    def __post_init__(self) -> None:
        _positive("camera", fps=self.fps)


@dataclass
class SyncConfig:
    server_url: str = ""  # empty: stay offline, keep everything in the outbox
    enrollment_token: str = ""  # one-time; used only until state/sync_identity.json exists
    interval_s: float = 30.0  # between sync rounds
    heartbeat_interval_s: float = 30.0  # between heartbeats (they carry desired state and labels back)
    timeout_s: float = 20.0  # read timeout per request
    connect_timeout_s: float = 10.0
    retry_attempts: int = 5  # per request, with exponential backoff and jitter
    retry_max_wait_s: float = 60.0  # longest wait between two attempts (a Retry-After may ask for more)
    package_max_bytes: int = 1 << 20  # cap of one upload package

    def __post_init__(self) -> None:
        _positive("sync", interval_s=self.interval_s, heartbeat_interval_s=self.heartbeat_interval_s)
        _positive("sync", timeout_s=self.timeout_s, connect_timeout_s=self.connect_timeout_s)
        _positive("sync", retry_attempts=self.retry_attempts, retry_max_wait_s=self.retry_max_wait_s)
        _positive("sync", package_max_bytes=self.package_max_bytes)


@dataclass
class OutboxConfig:
    path: str = "outbox.db"  # SQLite file; relative paths are under device.data_dir
    max_mb: float = 256.0  # disk bound of the outbox, blobs included
    queue_size: int = 1024  # records waiting for the writer thread; beyond, low-priority ones are dropped
    commit_interval_s: float = 1.0  # the writer batches records this long per commit (fewer SD-card writes)
    image_max_side: int = 128  # drift-event frames are downscaled to this many pixels at most
    jpeg_quality: int = 80

    def __post_init__(self) -> None:
        _positive("outbox", max_mb=self.max_mb, image_max_side=self.image_max_side, queue_size=self.queue_size)
        _positive("outbox", commit_interval_s=self.commit_interval_s)
        if not 1 <= self.jpeg_quality <= 95:
            raise ValueError(f"outbox.jpeg_quality must be within 1..95, got {self.jpeg_quality}")


@dataclass
class Config:
    feature_extractor: FeatureExtractorConfig = field(default_factory=FeatureExtractorConfig)
    feature_transformation: FeatureTransformationConfig = field(default_factory=FeatureTransformationConfig)
    adaptive_classifier: AdaptiveClassifierConfig = field(default_factory=AdaptiveClassifierConfig)
    drift_detectors: list[dict[str, Any]] | None = None  # None: the shipped default detectors
    adaptation: dict[str, Any] = field(default_factory=dict)  # see device.adapt; {} keeps the defaults
    device: DeviceConfig = field(default_factory=DeviceConfig)
    camera: CameraConfig = field(default_factory=CameraConfig)
    sync: SyncConfig = field(default_factory=SyncConfig)
    outbox: OutboxConfig = field(default_factory=OutboxConfig)

    def under_data_dir(self, path: str) -> Path:
        """`path` itself when absolute, else under `device.data_dir`."""
        p = Path(path)
        return p if p.is_absolute() else Path(self.device.data_dir) / p


def _to_float(value: Any) -> Any:
    return float(value) if isinstance(value, int) and not isinstance(value, bool) else value


def parse_config(data: Any, source: str = "<config>") -> Config:
    """Validate a decoded JSON document into a `Config`; errors name the key and `source`."""
    if not isinstance(data, dict):
        raise ConfigError("the configuration must be a JSON object", source)
    try:
        return dacite.from_dict(Config, data, config=dacite.Config(strict=True, type_hooks={float: _to_float}))
    except dacite.UnexpectedDataError as exc:
        raise ConfigError(f"unknown key(s) {sorted(exc.keys)}; allowed: {_allowed(data)}", source) from exc
    except dacite.WrongTypeError as exc:
        raise ConfigError(
            f"key {exc.field_path!r} must be {_type_name(exc.field_type)}, got {exc.value!r}", source
        ) from exc
    except dacite.DaciteError as exc:
        raise ConfigError(str(exc), source) from exc
    except ValueError as exc:
        raise ConfigError(str(exc), source) from exc


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", str(tp))


def _allowed(data: dict[str, Any]) -> str:
    """The keys allowed where the unknown one sits (top level or the first offending section)."""
    sections = get_type_hints(Config)
    if any(k not in sections for k in data):
        return ", ".join(sections)
    for key, value in data.items():
        typ = sections[key]
        if isinstance(value, dict) and is_dataclass(typ):
            names = [f.name for f in fields(typ)]
            if any(k not in names for k in value):
                return f"{key}: " + ", ".join(names)
    return ", ".join(sections)


def load_config(path: str | Path) -> Config:
    """Read and validate a JSON configuration file."""
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError as exc:
        raise ConfigError("configuration file not found", path) from exc
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ConfigError(f"not valid JSON: {exc}", path) from exc
    return parse_config(data, str(path))
