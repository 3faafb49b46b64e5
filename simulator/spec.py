"""What a simulation runs: how many devices, how, for how long, with which drift and faults."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from device.capture.drift import parse_drift
from device.errors import TinyLCMError

MAX_PROCESSES = 50  # two processes per device; beyond this, use agents
MAX_AGENTS = 1000
DEVICE_TYPE = "raspberrypi3"  # balena's name for the Pi Zero 2W class (armv7), one of the bundles' device types


class SimulationError(TinyLCMError):
    """A simulation that cannot run as asked (bad spec, server refused, device died)."""


@dataclass(frozen=True)
class Fault:
    """`offline@T:D`: the fleet loses the server at T s for D s; `kill@T`: kill -9 the devices at T, restart them."""

    kind: str
    at_s: float
    duration_s: float = 0.0

    def __str__(self) -> str:
        return f"{self.kind}@{self.at_s:g}" + (f":{self.duration_s:g}" if self.kind == "offline" else "")


_FAULT = re.compile(r"^(offline|kill)@(\d+(?:\.\d+)?)(?::(\d+(?:\.\d+)?))?$")


def parse_fault(spec: str) -> Fault:
    match = _FAULT.match(spec.strip())
    if match is None:
        raise SimulationError(f"bad --fault {spec!r}: use offline@T:D (network cut at T s for D s) or kill@T")
    kind, at, duration = match.group(1), float(match.group(2)), match.group(3)
    if kind == "offline" and duration is None:
        raise SimulationError(f"bad --fault {spec!r}: offline needs a duration, e.g. offline@10:5")
    if kind == "kill" and duration is not None:
        raise SimulationError(f"bad --fault {spec!r}: kill takes no duration, e.g. kill@10")
    return Fault(kind, at, float(duration or 0.0))


@dataclass(frozen=True)
class FleetSpec:
    devices: int
    duration_s: float
    mode: str = "auto"  # processes | agents | auto (processes up to 10 devices)
    fps: float = 2.0  # camera frames per second of each device
    drift: str | None = None  # injected into every `drift_share` of the devices, e.g. unseen@60
    drift_share: float = 1.0
    faults: tuple[Fault, ...] = field(default_factory=tuple)
    heartbeat_s: float = 2.0
    sync_s: float = 5.0
    probation_s: float = 30.0
    name: str = "sim"  # device names are NAME-0001...; every device is tagged with it and the run id

    def __post_init__(self) -> None:
        if self.mode not in ("auto", "processes", "agents"):
            raise SimulationError(f"bad mode {self.mode!r}: use processes, agents or auto")
        if not 1 <= self.devices <= MAX_AGENTS:
            raise SimulationError(f"--devices must be between 1 and {MAX_AGENTS}, not {self.devices}")
        if self.resolved_mode == "processes" and self.devices > MAX_PROCESSES:
            raise SimulationError(f"{self.devices} devices as processes is too many (at most {MAX_PROCESSES}): "
                                  "use --mode agents")
        if self.duration_s <= 0 or self.fps <= 0 or self.heartbeat_s <= 0 or self.sync_s <= 0:
            raise SimulationError("--duration, --fps, heartbeat and sync intervals must be > 0")
        if not 0.0 <= self.drift_share <= 1.0:
            raise SimulationError(f"--drift-share must be between 0 and 1, not {self.drift_share}")
        if self.drift:
            try:
                parse_drift(self.drift)
            except TinyLCMError as exc:
                raise SimulationError(f"bad --drift: {exc}") from exc
        if any(f.kind == "kill" for f in self.faults) and self.resolved_mode == "agents":
            raise SimulationError("--fault kill@T needs device processes (--mode processes): "
                                  "agents share one process")
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,31}", self.name):
            raise SimulationError(f"bad --name {self.name!r}: letters, digits, '_', '.', '-' (at most 32)")

    @property
    def resolved_mode(self) -> str:
        if self.mode != "auto":
            return self.mode
        return "processes" if self.devices <= 10 else "agents"

    def drift_for(self, index: int) -> str | None:
        """The drift of device `index`: the first `drift_share` of the fleet drifts."""
        return self.drift if index < round(self.drift_share * self.devices) else None
