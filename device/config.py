"""The appliance's JSON configuration, validated into dataclasses before anything starts.

Sections follow TinyLCM's (`feature_extractor`, `feature_transformation`, `adaptive_classifier`,
`drift_detectors`) plus `adaptation`, `device`, `camera`, `sync`, `outbox` and `updater`. Every field has a
default, so `{}` is a valid configuration; an unknown key, a wrong type or a bad value is a `ConfigError`
naming the key and the file. Only the command-line entry points read the environment and override settings
(with `dataclasses.replace`); nothing changes a parsed configuration.
Parsing never imports numpy: the updater validates the same file.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
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


# what device.knn implements; defined here so that validating a config (the updater does too)
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


# what device.monitor implements (its KINDS): each detector type's own parameters, and the types whose
# thresholds may be given in the signal's absolute units; defined here so that parsing never imports numpy
DETECTOR_PARAMETERS: dict[str, tuple[str, ...]] = {
    "knn_distance": ("min_instances", "delta", "threshold", "alpha", "mode"),
    "knn_cusum": ("drift", "threshold", "target", "mode"),
    "confidence": ("lam", "threshold", "target", "min_instances", "mode"),
    "feature_stats": ("lam", "threshold", "min_instances", "clip"),
    "feature_cvm": ("window", "reference", "baseline", "threshold"),
    "prediction_distribution": ("window", "threshold"),
    "accuracy": ("p0", "p1", "threshold"),
}
ABSOLUTE_UNITS = ("knn_distance", "knn_cusum", "confidence")
UNITS = ("sigma", "absolute")
WATCH_KEYS = ("warmup", "cooldown", "hysteresis")


@dataclass(frozen=True)
class DetectorConfig:
    """One entry of `drift_detectors`: `{"type": ..., params..., "name", "units", "warmup", "cooldown",
    "hysteresis"}` in the file. The detector checks its parameters' values when it is built (on the
    bundle's drift reference); their names and every other key are checked here."""

    type: str
    params: dict[str, float | int | str] = field(default_factory=dict)  # the detector's own, as given
    name: str | None = None  # None: the type
    units: str | None = None  # "sigma" (None) or "absolute" (types of ABSOLUTE_UNITS only)
    warmup: int | None = None  # None: the monitor's defaults
    cooldown: int | None = None
    hysteresis: int | None = None

    def __post_init__(self) -> None:
        label = self.label
        if self.type not in DETECTOR_PARAMETERS:
            raise ValueError(
                f"drift detector {label!r}: unknown type {self.type!r}, expected one of {sorted(DETECTOR_PARAMETERS)}"
            )
        allowed_units = UNITS if self.type in ABSOLUTE_UNITS else ("sigma",)
        if self.units is not None and self.units not in allowed_units:
            raise ValueError(f"drift detector {label!r}: units must be one of {allowed_units}, got {self.units!r}")
        if not all(isinstance(v, int) and v >= 0 for v in self.watch_settings().values()):
            raise ValueError(f"drift detector {label!r}: {', '.join(WATCH_KEYS)} must be integers >= 0")
        allowed = DETECTOR_PARAMETERS[self.type]
        unknown = sorted(set(self.params) - set(allowed))
        if unknown:
            raise ValueError(
                f"drift detector {label!r}: unknown parameters {unknown}, "
                f"allowed: {sorted({*allowed, *WATCH_KEYS, 'name', 'units'})}"
            )
        for key, value in self.params.items():
            if not isinstance(value, int | float | str):
                raise ValueError(f"drift detector {label!r}: {key} must be a number or a string, got {value!r}")

    @property
    def label(self) -> str:
        """The detector's name in signals and state: `name`, else the type."""
        return self.name if self.name is not None else str(self.type)

    def watch_settings(self) -> dict[str, int]:
        """The warm-up, cooldown and hysteresis given (the monitor's defaults stand for the others)."""
        return {key: getattr(self, key) for key in WATCH_KEYS if getattr(self, key) is not None}

    @classmethod
    def from_dict(cls, data: Any) -> DetectorConfig:
        """Parse one entry as written in the file."""
        if not isinstance(data, dict):
            raise ValueError("drift_detectors must be a list of objects")
        own = {key: data[key] for key in ("type", "name", "units", *WATCH_KEYS) if key in data}
        if "name" in own and not isinstance(own["name"], str):
            raise ValueError(f"drift detector {own['name']!r}: name must be a string")
        params = {key: value for key, value in data.items() if key not in own}
        return cls(**{"type": None, **own}, params=params)

    def to_dict(self) -> dict[str, Any]:
        """The entry as written in the file (`from_dict` gives it back)."""
        own = {key: getattr(self, key) for key in ("name", "units", *WATCH_KEYS) if getattr(self, key) is not None}
        return {"type": self.type, **own, **self.params}


@dataclass
class AdaptConfig:
    """The `adaptation` section (see `device.adapt`). Distances are in units of the reference scale (a quantile
    of the reference set's nearest-neighbour distances), so one configuration fits any PCA space. Ages and
    windows count frames, not seconds: the device has no real-time clock, while frame sequence numbers survive
    reboots. The defaults were tuned on the digits bundle with `python -m benchmarks.adaptation` seeds 0-9 and 40-99."""

    # quarantine
    quarantine_size: int = 256  # samples held at most; the oldest leaves first
    max_age: int = 150  # frames (sequence-number distance) a sample may wait in quarantine: a new class
    # fills it within tens of frames, while the rare outliers of known classes must not pile up into a cluster
    novelty_distance: float = 1.2  # flag a drifting frame whose nearest reference is farther (scale units)
    min_confidence: float = 0.9  # ... or whose kNN vote share is below this
    scale_quantile: float = 0.5  # quantile of reference nearest-neighbour distances that defines the scale
    # pseudo-labelling
    check_every: int = 2  # newly quarantined samples between two cluster searches
    min_cluster: int = 5  # members a cluster needs to be pseudo-labelled
    cluster_radius: float = 1.4  # radius around the cluster's medoid (scale units)
    stable_checks: int = 2  # consecutive searches that must find the same cluster
    stable_overlap: float = 0.5  # share of the previous candidate's members still in the cluster
    new_class_distance: float = 1.2  # median distance from members to a named class's samples making a cluster new
    agreement: float = 0.8  # kNN label share among members needed to extend a known class
    join_size: int = 4  # most central members of a cluster that join the reference set (purer than its rim)
    join_distance: float = 1.0  # ... of a new class, only those at least this far from the bundle's samples
    learned_share: float = 0.35  # share of the reference set learned samples may fill; beyond it the most redundant
    # learned sample leaves (a pseudo-labelled one first; an operator's label always joins): the bundle keeps the rest
    max_clusters: int = 32  # pseudo-labelled clusters remembered for relabelling by the operator
    novel_vote: bool = True  # a frame quarantined during a drift is predicted by a vote among the new classes'
    # samples (pseudo-labels and operator labels of classes the bundle lacks), when any is within novel_radius
    novel_radius: float = 2.0  # ... of the frame (scale units); otherwise, and when off, the plain kNN vote stands.
    # Wider gains little on new classes and costs known ones in a mixed drift: see benchmarks.adaptation (mixed)
    # validated labels
    max_pending: int = 512  # validated labels waiting to be applied, at most
    # the vote of a learned sample, as a share of a bundle sample's: guards the known classes where new ones overlap
    label_weight: float = 0.65  # a sample an operator labelled (drift samples: often ambiguous, near known classes)
    pseudo_weight: float = 1.0  # a pseudo-labelled sample: only central cluster members, away from the bundle's, join,
    # and the learned share bounds them (0.9: 0.016 less mapped accuracy on seeds 0-9 for 0.003 more retention)
    # snapshot and rollback
    window: int = 30  # drifting frames before an adaptation that form its baseline
    probation: int = 30  # frames watched after a pseudo-label (and any joining it meanwhile) before they are kept
    max_confidence_drop: float = 0.2  # roll back when mean confidence falls by more (absolute; over the frames voted
    # to a named class when more than a third of the frames before and after were, else over every frame: see
    # device.adapt.probation)
    max_agreement_drop: float = 0.2  # roll back when mean neighbour agreement falls by more (absolute; the same frames)
    max_growth: float = 2.0  # roll back when quarantine inflow stays at or above this multiple of the baseline's
    cooldown: int = 100  # frames without pseudo-labelling after a rollback

    def __post_init__(self) -> None:
        for name in (
            "quarantine_size",
            "max_age",
            "check_every",
            "min_cluster",
            "stable_checks",
            "join_size",
            "max_clusters",
            "max_pending",
            "window",
            "probation",
        ):
            _check(name, getattr(self, name), "an integer >= 1", lambda v: isinstance(v, int) and v >= 1)
        _check("cooldown", self.cooldown, "an integer >= 0", lambda v: isinstance(v, int) and v >= 0)
        if not isinstance(self.novel_vote, bool):
            raise ValueError(f"adaptation.novel_vote must be true or false, got {self.novel_vote!r}")
        for name in ("novelty_distance", "cluster_radius", "new_class_distance", "max_growth", "novel_radius"):
            _check(name, getattr(self, name), "a number > 0", lambda v: _number(v) and v > 0)
        _check("join_distance", self.join_distance, "a number >= 0", lambda v: _number(v) and v >= 0)
        for name in ("min_confidence", "agreement", "max_confidence_drop", "max_agreement_drop"):
            _check(name, getattr(self, name), "a number within [0, 1]", lambda v: _number(v) and 0 <= v <= 1)
        for name in ("label_weight", "pseudo_weight"):
            _check(name, getattr(self, name), "a number within (0, 1]", lambda v: _number(v) and 0 < v <= 1)
        for name in ("scale_quantile", "stable_overlap", "learned_share"):
            _check(name, getattr(self, name), "a number within (0, 1]", lambda v: _number(v) and 0 < v <= 1)
        if self.min_cluster > self.quarantine_size:
            raise ValueError(f"min_cluster must be <= quarantine_size ({self.quarantine_size}), got {self.min_cluster}")

    def to_dict(self) -> dict[str, int | float | bool]:
        """The settings as a JSON object (round-trips through `AdaptConfig(**d)`)."""
        return {f.name: getattr(self, f.name) for f in fields(self)}


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
class UpdaterConfig:
    """`tinylcm updater`'s settings; each of its command-line flags overrides one of them."""

    server_url: str = ""  # --server; empty: sync.server_url, else state/provisioning.json
    health_url: str = ""  # --health-url; empty: /healthz on 127.0.0.1 at device.health_port
    device_type: str = ""  # --device-type; empty: BALENA_DEVICE_TYPE, else the board's
    poll_interval_s: float = 10.0  # between two looks at desired.json while idle
    probation_s: float = 300.0  # --probation-s: healthy running time before a new model is kept
    stale_s: float = 60.0  # --stale-s: the watchdog restarts the inference service after this long unhealthy
    service: str = "inference"  # --service: what the watchdog restarts (balena service, compose service label)
    docker_socket: str = ""  # --docker-socket on plain Docker hosts; empty: /var/run/docker.sock
    compose_project: str = ""  # --compose-project of the inference container (Docker hosts)
    inference_cmd: str = ""  # --inference-cmd: run the inference service as a child and restart it when hung

    def __post_init__(self) -> None:
        _positive("updater", poll_interval_s=self.poll_interval_s, probation_s=self.probation_s)
        _positive("updater", stale_s=self.stale_s)


@dataclass
class Config:
    feature_extractor: FeatureExtractorConfig = field(default_factory=FeatureExtractorConfig)
    feature_transformation: FeatureTransformationConfig = field(default_factory=FeatureTransformationConfig)
    adaptive_classifier: AdaptiveClassifierConfig = field(default_factory=AdaptiveClassifierConfig)
    drift_detectors: list[DetectorConfig] | None = None  # None: the shipped default detectors
    adaptation: AdaptConfig = field(default_factory=AdaptConfig)
    device: DeviceConfig = field(default_factory=DeviceConfig)
    camera: CameraConfig = field(default_factory=CameraConfig)
    sync: SyncConfig = field(default_factory=SyncConfig)
    outbox: OutboxConfig = field(default_factory=OutboxConfig)
    updater: UpdaterConfig = field(default_factory=UpdaterConfig)

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
        hooks = {float: _to_float, DetectorConfig: DetectorConfig.from_dict}
        return dacite.from_dict(Config, data, config=dacite.Config(strict=True, type_hooks=hooks))
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


def _number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and value == value


def _check(name: str, value: Any, allowed: str, ok: Callable[[Any], bool]) -> None:
    if isinstance(value, bool) or not ok(value):
        raise ValueError(f"adaptation.{name} must be {allowed}, got {value!r}")
