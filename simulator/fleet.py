"""Run a simulated fleet against a server: enroll, start, inject faults on schedule, summarise, stop."""

from __future__ import annotations

import logging
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from simulator.agents import AgentFleet
from simulator.devices import DeviceSetup, DeviceStatus
from simulator.processes import ProcessDevice, stop_all
from simulator.relay import Relay
from simulator.server import OperatorAPI
from simulator.spec import Fault, FleetSpec, SimulationError

log = logging.getLogger(__name__)
Say = Callable[[str], None]


class ProcessFleet:
    """Each device as two processes; `kill` faults cut their power (SIGKILL) and boot them again."""

    def __init__(self, setups: list[DeviceSetup], spec: FleetSpec) -> None:
        self.devices = [ProcessDevice(setup, spec) for setup in setups]

    def start(self, say: Say | None = None) -> ProcessFleet:
        for device in self.devices:
            device.start()
        return self

    def statuses(self) -> list[DeviceStatus]:
        return [device.status() for device in self.devices]

    def power_cycle(self) -> None:
        for device in self.devices:
            device.power_cycle()

    def close(self) -> None:
        stop_all(self.devices)


@dataclass
class Summary:
    """The fleet at one instant, as the live line and the final report show it."""

    elapsed_s: float
    devices: int
    alive: int
    enrolled: int
    frames: int
    drift_events: int
    outbox_depth: int
    models: dict[str, int]
    updates: dict[str, int]
    server_seen: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def of(cls, elapsed_s: float, statuses: list[DeviceStatus]) -> Summary:
        return cls(elapsed_s=round(elapsed_s, 1), devices=len(statuses), alive=sum(s.alive for s in statuses),
                   enrolled=sum(s.enrolled for s in statuses), frames=sum(s.frames for s in statuses),
                   drift_events=sum(s.drift_events for s in statuses),
                   outbox_depth=sum(s.outbox_depth for s in statuses),
                   models=dict(Counter(s.model_version or "?" for s in statuses)),
                   updates=dict(Counter(s.update_state or "?" for s in statuses)))

    def line(self) -> str:
        models = " ".join(f"{k}:{v}" for k, v in sorted(self.models.items()))
        updates = " ".join(f"{k}:{v}" for k, v in sorted(self.updates.items()))
        seen = "" if self.server_seen is None else f" | server sees {self.server_seen}"
        return (f"[{self.elapsed_s:6.1f}s] alive {self.alive}/{self.devices} enrolled {self.enrolled} | "
                f"frames {self.frames} drift events {self.drift_events} outbox {self.outbox_depth} | "
                f"models {models} | updates {updates}{seen}")


class Simulation:
    """`spec` against the server at `server_url`, in `workdir`; `run()` returns the final summary."""

    def __init__(self, spec: FleetSpec, server_url: str, token: str, workdir: Path, *,
                 root: bytes | None = None, say: Say = print, every_s: float = 5.0) -> None:
        self.spec, self.workdir, self.say, self.every_s = spec, workdir, say, every_s
        self.api = OperatorAPI(server_url, token)
        self.run_id = uuid.uuid4().hex[:8]
        self.tag = f"{spec.name}-{self.run_id}"
        self.root = root
        self.relay: Relay | None = None
        self.fleet: ProcessFleet | AgentFleet | None = None
        self.faults_done: list[str] = []
        self.pending = sorted(spec.faults, key=lambda f: f.at_s)
        self.started = time.monotonic()
        self.boot_s: float | None = None  # how long starting the devices took

    def setups(self) -> list[DeviceSetup]:
        root = self.root if self.root is not None else self.api.root()
        device_url = self.api.url
        if any(f.kind == "offline" for f in self.spec.faults):
            self.relay = Relay(self.api.url).start()
            device_url = self.relay.url
        tokens = self.api.enrollment_tokens(self.spec.devices, [self.spec.name, self.tag])
        return [DeviceSetup(i, self.workdir / f"{self.spec.name}-{i + 1:04d}", device_url, token, root)
                for i, token in enumerate(tokens)]

    def start(self) -> ProcessFleet | AgentFleet:
        setups = self.setups()
        mode = self.spec.resolved_mode
        self.say(f"starting {len(setups)} devices as {mode} (tag {self.tag}) in {self.workdir}")
        fleet = ProcessFleet(setups, self.spec) if mode == "processes" else AgentFleet(setups, self.spec)
        began = time.monotonic()
        self.fleet = fleet.start(self.say)
        self.started = time.monotonic()
        self.boot_s = round(self.started - began, 1)
        return self.fleet

    def summary(self, elapsed_s: float, ask_server: bool = True) -> Summary:
        assert self.fleet is not None
        summary = Summary.of(elapsed_s, self.fleet.statuses())
        if ask_server:
            try:
                summary.server_seen = sum(1 for d in self.api.devices(self.tag) if d.get("last_seen"))
            except SimulationError as exc:
                self.say(f"server: {exc}")
        return summary

    def _apply(self, fault: Fault, elapsed_s: float) -> None:
        if fault.kind == "offline" and self.relay is not None:
            if elapsed_s < fault.at_s + fault.duration_s:
                if not self.relay.offline:
                    self.relay.cut()
                    self.say(f"fault {fault}: network cut")
                return
            self.relay.restore()
            self.say(f"fault {fault}: network back")
        elif fault.kind == "kill" and isinstance(self.fleet, ProcessFleet):
            self.fleet.power_cycle()
            self.say(f"fault {fault}: every device killed (-9) and booted again")
        self.faults_done.append(str(fault))

    def watch(self, seconds: float, until: Callable[[Summary], bool] | None = None) -> Summary:
        """Print a summary line every `every_s` and apply the faults due, for `seconds` or until `until` holds."""
        assert self.fleet is not None, "start() first"
        ends = time.monotonic() + seconds
        next_line = 0.0
        while True:
            elapsed = time.monotonic() - self.started
            for fault in [f for f in self.pending if f.at_s <= elapsed]:
                self._apply(fault, elapsed)
                if str(fault) in self.faults_done:
                    self.pending.remove(fault)
            if time.monotonic() >= next_line or time.monotonic() >= ends:
                summary = self.summary(elapsed)
                self.say(summary.line())
                next_line = time.monotonic() + self.every_s
                if time.monotonic() >= ends or (until is not None and until(summary)):
                    return summary
            time.sleep(0.2)

    def stop(self, drain_s: float = 30.0) -> dict[str, Any]:
        """Drain the agents' outboxes (until done, or no progress for `drain_s`), stop every device; the
        final report."""
        fleet = self.fleet
        assert fleet is not None, "start() first"
        try:
            if self.relay is not None:
                self.relay.restore()
            drained, drain_took = None, None
            if isinstance(fleet, AgentFleet) and drain_s > 0:
                began = time.monotonic()
                drained = fleet.drain(drain_s)
                drain_took = round(time.monotonic() - began, 1)
                self.say(f"outboxes {'drained' if drained else 'NOT drained'} in {drain_took} s")
            final = self.summary(time.monotonic() - self.started)
        finally:
            fleet.close()
            if self.relay is not None:
                self.relay.close()
        return {"run": self.tag, "mode": self.spec.resolved_mode, "devices": final.devices, "alive": final.alive,
                "enrolled": final.enrolled, "server_seen": final.server_seen, "frames": final.frames,
                "drift_events": final.drift_events, "outbox_depth": final.outbox_depth, "drained": drained,
                "models": final.models, "updates": final.updates, "faults": self.faults_done,
                "frame_lag_s": round(fleet.lag_s, 3) if isinstance(fleet, AgentFleet) else None,
                "boot_s": self.boot_s, "drain_s": drain_took}

    def run(self, drain_s: float = 30.0) -> dict[str, Any]:
        """Start, run for the spec's duration with its faults, stop; the final report."""
        self.start()
        try:
            self.watch(self.spec.duration_s)
        finally:
            result = self.stop(drain_s)
        return result
