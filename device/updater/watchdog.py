"""Watchdog: restart a hung inference service (no healthy heartbeat for a while), at a bounded rate.

Restarting goes through a `Restarter`, chosen by `select_restarter` in this order: the balena supervisor API
on a balena device, the Docker socket on a plain Docker host (`container.py`), a child process of this CLI.
"""

from __future__ import annotations

import json
import logging
import shlex
import subprocess
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from device.errors import ServerRefusedError, ServerUnavailableError
from device.updater.container import DockerRestarter, is_socket
from device.updater.health import HealthSample

if TYPE_CHECKING:
    import urllib3

log = logging.getLogger(__name__)


class Restarter(Protocol):
    def restart(self) -> None: ...


class ProcessRestarter:
    """Runs the inference service as a child process; `restart()` stops it (TERM, then KILL) and starts it anew."""

    def __init__(self, argv: Sequence[str], stop_timeout_s: float = 10.0) -> None:
        self.argv = list(argv)
        self.stop_timeout_s = stop_timeout_s
        self.process: subprocess.Popen[bytes] | None = None
        self.starts = 0

    def start(self) -> None:
        self.process = subprocess.Popen(self.argv)
        self.starts += 1

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(self.stop_timeout_s)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()

    def restart(self) -> None:
        self.stop()
        self.start()


class BalenaRestarter:
    """Restarts one service of this balena app through the supervisor's v2 API."""

    def __init__(self, address: str, api_key: str, app_id: str, service: str, timeout_s: float = 10.0) -> None:
        self.url = f"{address.rstrip('/')}/v2/applications/{app_id}/restart-service?apikey={api_key}"
        self.service = service
        self.timeout_s = timeout_s
        self._http: urllib3.PoolManager | None = None  # made at the first restart: urllib3 is loaded only then

    def restart(self) -> None:
        import urllib3

        if self._http is None:  # one request per restart; the watchdog decides when to try again
            self._http = urllib3.PoolManager(retries=False)
        body = json.dumps({"serviceName": self.service}).encode()
        try:
            response = self._http.request("POST", self.url, body=body, headers={"Content-Type": "application/json"},
                                     timeout=self.timeout_s)
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            raise ServerUnavailableError(f"supervisor unreachable: {exc}") from exc
        if response.status >= 500:
            raise ServerUnavailableError(f"supervisor: HTTP {response.status}", status=response.status)
        if response.status >= 300:  # a redirect is not followed: the supervisor does not send one
            raise ServerRefusedError(f"supervisor refused to restart {self.service}: HTTP {response.status}",
                                     response.status)


@dataclass(frozen=True)
class RestarterChoice:
    """The restarter the watchdog uses and what the updater reports about it."""

    kind: str  # "balena" | "docker" | "process" | "none"
    restarter: Restarter | None
    detail: str  # where it restarts, or why there is none


def select_restarter(environ: Mapping[str, str], service: str = "inference", docker_socket: Path | None = None,
                     compose_project: str | None = None, inference_cmd: str | None = None) -> RestarterChoice:
    """Balena supervisor (its variables set), then the Docker socket (mounted), then a child process (a command
    given); nothing starts here. `docker_socket` None: the default path; the socket is not contacted yet."""
    address, key, app = (environ.get(name) for name in
                         ("BALENA_SUPERVISOR_ADDRESS", "BALENA_SUPERVISOR_API_KEY", "BALENA_APP_ID"))
    if address and key and app:
        return RestarterChoice("balena", BalenaRestarter(address, key, app, service),
                               f"balena supervisor at {address}, service {service}")
    socket = docker_socket or DockerRestarter().socket_path
    if is_socket(socket):
        where = f"service {service}" + (f" of project {compose_project}" if compose_project else "")
        return RestarterChoice("docker", DockerRestarter(socket, service, compose_project),
                               f"Docker engine at unix://{socket}, containers of {where}")
    if inference_cmd:
        return RestarterChoice("process", ProcessRestarter(shlex.split(inference_cmd)),
                               f"child process {inference_cmd!r}")
    return RestarterChoice("none", None, (
        f"no balena supervisor (BALENA_SUPERVISOR_ADDRESS unset), no Docker socket at {socket}, no --inference-cmd: "
        "a hung inference service will NOT be restarted (Docker restarts exited containers, not unhealthy ones)"))


class Watchdog:
    """Feed it every health sample; it restarts the service once it has been unhealthy for `stale_after_s`."""

    def __init__(self, restarter: Restarter, stale_after_s: float = 60.0, max_restarts: int = 3,
                 per_s: float = 3600.0, clock: Callable[[], float] = time.monotonic) -> None:
        if stale_after_s <= 0 or max_restarts < 1 or per_s <= 0:
            raise ValueError("watchdog: stale_after_s > 0, max_restarts >= 1, per_s > 0 required")
        self.restarter = restarter
        self.stale_after_s, self.max_restarts, self.per_s = stale_after_s, max_restarts, per_s
        self._clock = clock
        self._healthy_at = clock()
        self._restarts: deque[float] = deque()
        self.restarts = 0  # total, for health reports
        self.suppressed = 0  # restarts the rate bound refused

    def observe(self, sample: HealthSample) -> bool:
        """True if this sample made the watchdog restart the service."""
        now = self._clock()
        if sample.healthy:
            self._healthy_at = now
            return False
        if now - self._healthy_at < self.stale_after_s:
            return False
        while self._restarts and now - self._restarts[0] >= self.per_s:
            self._restarts.popleft()
        self._healthy_at = now  # give the restarted (or left alone) service a full period again
        if len(self._restarts) >= self.max_restarts:
            self.suppressed += 1
            log.error("watchdog: inference unhealthy, but %d restarts in %.0f s already: not restarting",
                      len(self._restarts), self.per_s)
            return False
        self._restarts.append(now)
        self.restarts += 1
        log.warning("watchdog: no healthy heartbeat for %.0f s: restarting the inference service", self.stale_after_s)
        try:
            self.restarter.restart()
        except (ServerUnavailableError, ServerRefusedError, OSError) as exc:
            log.error("watchdog: restart failed: %s", exc)
        return True
