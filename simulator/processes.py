"""Simulated devices as shipped: `tinylcm run` and `tinylcm updater` as two processes over one data dir."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
from typing import Any

import urllib3

from simulator.devices import DeviceSetup, DeviceStatus, write_config
from simulator.spec import DEVICE_TYPE, FleetSpec

_HTTP = urllib3.PoolManager(retries=False)  # one look at a device's /healthz per status poll


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class ProcessDevice:
    """One device: both services started with `start()`, killed (SIGTERM, or SIGKILL: power loss) with `kill()`."""

    def __init__(self, setup: DeviceSetup, spec: FleetSpec) -> None:
        self.setup = setup
        self.health_port = free_port()
        setup.provision()
        self.config = write_config(setup.workdir / "device.json", setup.config(spec, self.health_port))
        self.probation_s = spec.probation_s
        self.procs: list[subprocess.Popen[bytes]] = []
        self.restarts = 0
        self.before: dict[str, int] = {"frames": 0, "drift_events": 0}  # earlier boots' counts (/healthz
        # counts from its own start)
        self._last: dict[str, Any] = {}

    def _spawn(self, name: str, *argv: str) -> None:
        with (self.setup.workdir / f"{name}.log").open("ab") as out:
            self.procs.append(subprocess.Popen([sys.executable, "-m", "device.cli", *argv], cwd=self.setup.workdir,
                                               stdout=out, stderr=subprocess.STDOUT, start_new_session=True))

    def start(self) -> ProcessDevice:
        self.procs = []
        self._spawn("run", "run", "--config", str(self.config))
        self._spawn("updater", "updater", "--config", str(self.config), "--device-type", DEVICE_TYPE,
                    "--probation-s", str(self.probation_s))
        return self

    def alive(self) -> bool:
        return bool(self.procs) and all(p.poll() is None for p in self.procs)

    @property
    def device_id(self) -> str | None:
        return self.setup.device_id

    def health(self) -> dict[str, Any]:
        try:
            response = _HTTP.request("GET", f"http://127.0.0.1:{self.health_port}/healthz", timeout=2.0)
            return dict(json.loads(response.data))  # whatever the status: a 503 while stalled carries the JSON too
        except (urllib3.exceptions.HTTPError, OSError, ValueError):
            return {}

    def status(self) -> DeviceStatus:
        health = self.health()
        self._last = health or self._last
        status = DeviceStatus.from_health(self.alive(), self.device_id is not None, health, self.setup.update_state())
        status.frames += self.before["frames"]
        status.drift_events += self.before["drift_events"]
        return status

    def log_tail(self, chars: int = 2000) -> str:
        return "".join(f"--- {p.name}\n{p.read_text(errors='replace')[-chars:]}\n"
                       for p in sorted(self.setup.workdir.glob("*.log")))

    def kill(self, hard: bool = False) -> None:
        """SIGTERM both services (SIGKILL after 20 s), or SIGKILL at once (`hard`: the power is cut)."""
        self.signal(hard)
        self.wait()

    def signal(self, hard: bool = False) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL if hard else signal.SIGTERM)

    def wait(self, timeout_s: float = 20) -> None:
        for proc in self.procs:
            try:
                proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(10)

    def power_cycle(self) -> None:
        self.kill(hard=True)
        for key in self.before:
            self.before[key] += int(self._last.get(key) or 0)
        self._last = {}
        self.restarts += 1
        self.start()


def stop_all(devices: list[ProcessDevice]) -> None:
    """SIGTERM every device at once, then wait for them all (each takes a few seconds to say goodbye)."""
    for device in devices:
        device.signal()
    for device in devices:
        device.wait()
