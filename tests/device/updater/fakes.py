"""Test doubles of the updater's surroundings: the inference service's health, a monotonic clock, a device dir."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from device.sync.identity import Identity, save_identity
from device.updater import State, Updater, UpdaterSettings
from device.updater.health import HealthSample
from device.updater.settings import ProbationGates
from device.updater.smoke import check_bundle
from device.updater.target import DeviceProfile
from tests.device.updater.tuf_server import SECRET, TufRepo
from tests.utils.bundles import FACTORY, ROOT

V2 = ROOT / "benchmarks" / "fixtures" / "digits-v2"
V2_TARGET = "digits/2.0.0/bundle.tar"
DEVICE = DeviceProfile(device_type="raspberrypi0-2w-64", tflite_version="2.18")
GATES = ProbationGates(window_s=10, min_frames=5, reload_timeout_s=20, heartbeat_timeout_s=6, max_restarts=2,
                       min_gate_frames=2)


class FakeClock:
    """A monotonic clock that moves only when told (each `tick` seconds per read)."""

    def __init__(self, tick: float = 1.0) -> None:
        self.now, self.tick = 1000.0, tick

    def __call__(self) -> float:
        self.now += self.tick
        return self.now


@dataclass
class FakeInference:
    """/healthz of an inference service that reloads whatever `models/current` points to."""

    models: Path
    frames_per_probe: int = 5
    by_version: dict[str, dict[str, Any]] = field(default_factory=dict)  # version -> overrides
    down: bool = False
    frames: int = 0

    def __call__(self) -> HealthSample:
        if self.down:
            return HealthSample(reachable=False)
        version = json.loads((self.models / "current" / "bundle.json").read_text())["version"]
        self.frames += self.frames_per_probe
        data = {"status": "ok", "model_version": version, "frames": self.frames, "drift_events": 0,
                "latency_ms_p95": 4.0, "drift_alarm_rate": 2.0, **self.by_version.get(version, {})}
        return HealthSample.from_json(data)


def make_device(data_dir: Path, repo: TufRepo) -> Path:
    """A provisioned, enrolled device: pinned root, identity; the slots come from the factory bundle."""
    (data_dir / "tuf").mkdir(parents=True, exist_ok=True)
    (data_dir / "tuf" / "root.json").write_bytes(repo.root_bytes)
    save_identity(data_dir / "state" / "sync_identity.json", Identity("dev-1", SECRET))
    return data_dir


def desire(data_dir: Path, target: str | None = V2_TARGET, version: str | None = "2.0.0",
           model: str = "digits") -> None:
    (data_dir / "state").mkdir(parents=True, exist_ok=True)
    (data_dir / "state" / "desired.json").write_text(json.dumps(
        {"bundle_version": version, "model": model, "target": target, "received_at": "2026-11-27T10:00:00+00:00"}))


def settings_for(data_dir: Path, server_url: str, **changes: Any) -> UpdaterSettings:
    values: dict[str, Any] = {"data_dir": data_dir, "server_url": server_url, "factory_bundle": FACTORY,
                              "probe_interval_s": 1.0, "poll_interval_s": 1.0, "http_timeout_s": 5.0,
                              "download_attempts": 3, "retry_initial_s": 0.01, "retry_max_s": 0.02,
                              "gates": GATES}
    return UpdaterSettings(**{**values, **changes})


def make_updater(data_dir: Path, server_url: str, health: Callable[[], HealthSample] | None = None,
                 **kwargs: Any) -> Updater:
    """An updater on `data_dir`, recovered; the smoke test runs in-process unless `real_smoke` (a subprocess)."""
    settings = kwargs.pop("settings", None) or settings_for(data_dir, server_url)
    if not kwargs.pop("real_smoke", False):
        kwargs.setdefault("smoke", lambda path: check_bundle(path, 4))
    updater = Updater(settings, device=kwargs.pop("device", DEVICE),
                      health=health or FakeInference(data_dir / "models"),
                      monotonic=kwargs.pop("monotonic", FakeClock()), **kwargs)
    updater.recover()
    return updater


def drive(updater: Updater, until: Callable[[Updater], bool] | None = None, max_steps: int = 100) -> State:
    """Step (without sleeping) until `until` holds, by default until the update has finished."""
    done = until or (lambda u: u.record.state in (State.COMMITTED, State.ROLLED_BACK))
    for _ in range(max_steps):
        updater.step()
        if done(updater):
            return updater.record.state
    return updater.record.state


def live_version(data_dir: Path) -> str:
    return str(json.loads((data_dir / "models" / "current" / "bundle.json").read_text())["version"])


def variant(tmp: Path, version: str, model: bytes | None = None, source: Path = V2) -> Path:
    """A copy of `source` under another version (and model bytes), resealed so its file hashes check out."""
    import shutil

    from tests.utils.bundles import edit_meta, reseal

    dest = tmp / f"bundle-{version}"
    shutil.copytree(source, dest)
    edit_meta(dest, version=version)
    if model is not None:
        (dest / "model.tflite").write_bytes(model)
    reseal(dest)
    return dest


def knn_variant(tmp: Path, version: str, source: Path = V2, replaced: int = 10) -> Path:
    """`source` under another version whose kNN state alone changed (its first `replaced` reference vectors
    taken over by later ones, as operator labels do), resealed: the kNN-only update."""
    import numpy as np

    dest = variant(tmp, version, source=source)
    with np.load(dest / "knn_state.npz") as state:
        vectors, labels = state["vectors"].copy(), state["labels"].copy()
    vectors[:replaced], labels[:replaced] = vectors[-replaced:], labels[-replaced:]
    np.savez_compressed(dest / "knn_state.npz", vectors=vectors, labels=labels)  # as bundles are built
    from tests.utils.bundles import reseal

    reseal(dest)
    return dest
