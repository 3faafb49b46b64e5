"""One simulated device's data dir and configuration, and its status as the summary counts it."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from contract.atomic import read_json
from simulator.spec import FleetSpec


@dataclass(frozen=True)
class DeviceSetup:
    """Where device `index` keeps its state, which server it talks to, with which one-time token."""

    index: int
    workdir: Path
    server_url: str
    token: str
    root: bytes  # the TUF root pinned at provisioning

    @property
    def name(self) -> str:
        return self.workdir.name

    @property
    def data(self) -> Path:
        return self.workdir / "data"

    def config(self, spec: FleetSpec, health_port: int) -> dict[str, Any]:
        """The device's JSON configuration: a digits camera, the spec's drift, syncing with the server."""
        return {
            "device": {"data_dir": str(self.data), "health_port": health_port, "name": self.name},
            "camera": {"source": "digits", "fps": spec.fps, "seed": self.index, "realtime": True,
                       "drift": spec.drift_for(self.index)},
            "sync": {"server_url": self.server_url, "enrollment_token": self.token, "interval_s": spec.sync_s,
                     "heartbeat_interval_s": spec.heartbeat_s, "retry_max_wait_s": 5.0},
        }

    def provision(self) -> None:
        """What flashing a card does: the data volume with the pinned root."""
        (self.data / "tuf").mkdir(parents=True, exist_ok=True)
        (self.data / "tuf" / "root.json").write_bytes(self.root)

    @property
    def device_id(self) -> str | None:
        """The id the server gave at enrollment, None until then."""
        identity = read_json(self.data / "state" / "sync_identity.json")
        return str(identity["device_id"]) if "device_id" in identity else None

    def update_state(self) -> dict[str, Any]:
        return read_json(self.data / "state" / "updater.json")


@dataclass
class DeviceStatus:
    """What the live summary adds up over the fleet."""

    alive: bool
    enrolled: bool
    frames: int = 0
    drift_events: int = 0
    outbox_depth: int = 0
    model_version: str | None = None
    update_state: str | None = None

    @classmethod
    def from_health(cls, alive: bool, enrolled: bool, health: dict[str, Any], update: dict[str, Any]) -> DeviceStatus:
        return cls(alive=alive, enrolled=enrolled, frames=int(health.get("frames") or 0),
                   drift_events=int(health.get("drift_events") or 0),
                   outbox_depth=int(health.get("outbox_depth") or 0),
                   model_version=health.get("model_version"), update_state=update.get("state"))


def write_config(path: Path, config: dict[str, Any]) -> Path:
    path.write_text(json.dumps(config, indent=2))
    return path
