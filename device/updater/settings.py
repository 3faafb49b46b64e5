"""What the updater is told: where the device state lives, where the server and the health endpoint are,
and the limits and gates it enforces. Built by the CLI; the library never reads the environment.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from device.layout import DataLayout


@dataclass(frozen=True)
class ArchiveLimits:
    """Bounds on a bundle tar, checked before a byte is extracted."""

    max_members: int = 16  # a bundle has six files
    max_member_bytes: int = 64 << 20  # one file
    max_total_bytes: int = 128 << 20  # all files together

    def __post_init__(self) -> None:
        if min(self.max_members, self.max_member_bytes, self.max_total_bytes) <= 0:
            raise ValueError("archive limits must be > 0")


@dataclass(frozen=True)
class ProbationGates:
    """When a freshly switched model is kept (commit) or replaced by the previous one (rollback)."""

    window_s: float = 300.0  # healthy running time needed before commit
    min_frames: int = 50  # frames the new model must have processed within the window
    reload_timeout_s: float = 120.0  # SWITCHED: time for /healthz to report the new model_version
    heartbeat_timeout_s: float = 60.0  # /healthz unreachable or "stalled" this long in a row -> rollback
    max_restarts: int = 3  # service restarts seen (frame counter went back) -> crash loop -> rollback
    latency_factor: float = 2.0  # p95 latency may grow to this multiple of the previous model's ...
    latency_floor_ms: float = 50.0  # ... and a p95 under this is always accepted
    drift_rate_factor: float = 3.0  # drift alarms per 1000 frames may grow to this multiple ...
    drift_rate_floor: float = 20.0  # ... and a rate under this is always accepted ...
    min_drift_alarms: int = 3  # ... as is one resting on fewer alarms (2 in 70 frames is noise, not 28/1000)
    min_gate_frames: int = 20  # latency/drift gates are judged only after this many frames of the new model

    def __post_init__(self) -> None:
        if min(self.window_s, self.reload_timeout_s, self.heartbeat_timeout_s) <= 0:
            raise ValueError("probation: window_s, reload_timeout_s and heartbeat_timeout_s must be > 0")
        if self.latency_factor < 1 or self.drift_rate_factor < 1:
            raise ValueError("probation: latency_factor and drift_rate_factor must be >= 1")
        if min(self.min_frames, self.max_restarts, self.min_gate_frames, self.min_drift_alarms) < 0:
            raise ValueError("probation: min_frames, max_restarts, min_gate_frames and min_drift_alarms must be >= 0")


@dataclass(frozen=True)
class UpdaterSettings:
    """Everything the updater needs; paths follow the layout of ARCHITECTURE.md under `data_dir`."""

    data_dir: Path  # the state volume (/data in the image)
    server_url: str | None = None  # None: read state/provisioning.json (written by the provisioner)
    health_url: str = "http://127.0.0.1:8321/healthz"  # the inference service's health endpoint
    device_type: str | None = None  # balena-style name; None: from /proc/device-tree/model
    factory_bundle: Path | None = None  # installed into slot-a when no slot exists yet
    poll_interval_s: float = 10.0  # between two looks at desired.json while idle
    probe_interval_s: float = 2.0  # between two /healthz probes while SWITCHED or in PROBATION
    http_timeout_s: float = 20.0  # connect and read timeout of every TUF request
    download_attempts: int = 5  # tries without progress before a download round gives up
    smoke_timeout_s: float = 120.0  # the smoke-test subprocess is killed after this long
    smoke_frames: int = 8  # frames the new model must classify in the smoke test
    retry_initial_s: float = 5.0  # backoff after a failed update round (doubles, with jitter) ...
    retry_max_s: float = 1800.0  # ... up to this
    history_limit: int = 50  # transitions kept in updater.json
    archive: ArchiveLimits = field(default_factory=ArchiveLimits)
    gates: ProbationGates = field(default_factory=ProbationGates)

    def __post_init__(self) -> None:
        if min(self.poll_interval_s, self.probe_interval_s, self.http_timeout_s, self.smoke_timeout_s) <= 0:
            raise ValueError("updater: intervals and timeouts must be > 0")
        if self.download_attempts < 1 or self.smoke_frames < 1:
            raise ValueError("updater: download_attempts and smoke_frames must be >= 1")

    @property
    def layout(self) -> DataLayout:
        return DataLayout(self.data_dir)

    @property
    def models_dir(self) -> Path:
        return self.layout.models

    @property
    def state_path(self) -> Path:
        return self.layout.updater_journal

    @property
    def desired_path(self) -> Path:
        return self.layout.desired

    @property
    def identity_path(self) -> Path:
        return self.layout.identity

    @property
    def provisioning_path(self) -> Path:
        return self.layout.provisioning_status

    @property
    def clock_path(self) -> Path:
        return self.layout.trusted_time

    @property
    def tuf_dir(self) -> Path:
        return self.layout.tuf

    @property
    def downloads_dir(self) -> Path:
        return self.layout.downloads
