"""Many simulated devices in one process: each agent is a whole device (appliance + updater) on its own data dir.

An agent runs the same objects `tinylcm run` and `tinylcm updater` run: `Appliance` (pipeline, outbox, sync
thread) and `Updater` (TUF, slots, probation). Only the driving differs: one thread paces every agent's
frames round-robin, a small pool steps the updaters, and the updater reads the appliance's health directly
instead of over HTTP.
"""

from __future__ import annotations

import heapq
import logging
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor

from device.appliance import Appliance
from device.bundle import factory_bundle
from device.capture import open_source
from device.capture.base import Source
from device.config import parse_config
from device.result import Result
from device.updater.health import HealthSample
from device.updater.machine import Updater
from device.updater.settings import ProbationGates, UpdaterSettings
from simulator.devices import DeviceSetup, DeviceStatus
from simulator.spec import DEVICE_TYPE, FleetSpec

log = logging.getLogger(__name__)
UPDATER_WORKERS = 4  # updater steps run at once (downloads and smoke tests take seconds)


class Agent:
    """One device in the shared process."""

    def __init__(self, setup: DeviceSetup, spec: FleetSpec) -> None:
        setup.provision()
        self.setup = setup
        config = parse_config(setup.config(spec, health_port=0), source=f"agent {setup.name}")
        settings = UpdaterSettings(data_dir=setup.data, server_url=setup.server_url, device_type=DEVICE_TYPE,
                                   factory_bundle=factory_bundle(), gates=ProbationGates(window_s=spec.probation_s))
        self.updater = Updater(settings, health=self._health)
        self.updater.recover()  # the factory bundle into slot-a, as on a first boot
        self.app = Appliance(config)
        cam = config.camera
        self.source: Source = open_source(cam.source, drift=cam.drift, seed=cam.seed,
                                          size=self.app.pipeline.bundle.frame_size, fps=cam.fps)
        self.seq = self.app.resume()
        self.frames: Iterator[Result] = self.app.runner.run(self.source, start_seq=self.seq)
        self.error: str | None = None
        self.app.connect()

    def _health(self) -> HealthSample:
        return HealthSample.from_json(self.app.snapshot()) if self.error is None else HealthSample(reachable=False)

    def frame(self) -> None:
        if self.error is not None:
            return
        try:
            self.seq = self.app.after_frame(next(self.frames))
        except Exception as exc:  # one broken device must not stop the others
            log.exception("agent %s stopped", self.setup.name)
            self.error = repr(exc)

    def status(self) -> DeviceStatus:
        return DeviceStatus.from_health(self.error is None, self.setup.device_id is not None, self.app.snapshot(),
                                        {"state": self.updater.record.state.value})

    def close(self) -> None:
        self.app.close(self.seq, self.source)


class AgentFleet:
    """Agents paced at `spec.fps` each by one frame thread; their updaters stepped by a small pool."""

    def __init__(self, setups: list[DeviceSetup], spec: FleetSpec) -> None:
        self.setups, self.spec = setups, spec
        self.agents: list[Agent] = []
        self.stop = threading.Event()
        self.lag_s = 0.0  # how far the frame thread fell behind the fleet's frame rate, at worst
        self._threads: list[threading.Thread] = []

    def start(self, progress: Callable[[str], None] | None = None) -> AgentFleet:
        began = time.monotonic()
        with ThreadPoolExecutor(4, thread_name_prefix="agent-boot") as pool:  # boots wait on fsync and enrollment
            for agent in pool.map(lambda setup: Agent(setup, self.spec), self.setups):
                self.agents.append(agent)
                if progress is not None and len(self.agents) % 100 == 0:
                    progress(f"{len(self.agents)}/{len(self.setups)} agents started"
                             f" ({time.monotonic() - began:.0f} s)")
        for target, name in ((self._frames, "agent-frames"), (self._updaters, "agent-updaters")):
            thread = threading.Thread(target=target, name=name, daemon=True)
            thread.start()
            self._threads.append(thread)
        return self

    def _frames(self) -> None:
        period = 1.0 / (self.spec.fps * len(self.agents))
        due = time.monotonic()
        index = 0
        while not self.stop.is_set():
            wait = due - time.monotonic()
            if wait > 0:
                self.stop.wait(wait)
            else:
                self.lag_s = max(self.lag_s, -wait)
                if -wait > 1.0:  # far behind: drop the backlog rather than race to catch up
                    due = time.monotonic()
            self.agents[index].frame()
            index = (index + 1) % len(self.agents)
            due += period

    def _updaters(self) -> None:
        queue = [(time.monotonic(), i) for i in range(len(self.agents))]
        heapq.heapify(queue)
        running: dict[int, Future[float]] = {}
        with ThreadPoolExecutor(UPDATER_WORKERS, thread_name_prefix="agent-updater") as pool:
            while not self.stop.is_set():
                for i, future in list(running.items()):
                    if future.done():
                        del running[i]
                        heapq.heappush(queue, (time.monotonic() + _wait(future), i))
                if queue and queue[0][0] <= time.monotonic() and len(running) < UPDATER_WORKERS:
                    _, i = heapq.heappop(queue)
                    running[i] = pool.submit(self.agents[i].updater.tick)
                    continue
                self.stop.wait(0.05)

    def drain(self, stall_s: float, cap_s: float | None = None, clock: Callable[[], float] = time.monotonic,
              sleep: Callable[[float], None] = time.sleep) -> bool:
        """Stop capturing, then sync until every outbox is empty; True when all are.

        Gives up when the fleet's backlog has not shrunk for `stall_s` (a server that stopped taking
        packages), or after `cap_s` in all (default ten times `stall_s`). A slow but moving drain, e.g.
        hundreds of agents uploading at once to a loaded server, is waited for. It checks every half
        second by `clock` and `sleep` (tests pass a fake pair).
        """
        self._halt()
        started = clock()
        cap = started + (cap_s if cap_s is not None else 10 * stall_s)
        for agent in self.agents:
            agent.app.outbox.flush(10)
        best, progressed, nudged = None, started, float("-inf")  # the first round nudges every agent
        while (now := clock()) < cap:
            depths = [agent.app.outbox.depth() for agent in self.agents]
            total = sum(depths)
            if total == 0:
                return True
            if best is None or total < best:
                best, progressed = total, now
            elif now - progressed > stall_s:
                return False
            if now - nudged >= 2.0:  # wake every agent still holding records (a round may have just ended)
                for agent, depth in zip(self.agents, depths, strict=True):
                    if depth and agent.app.connection.sync is not None:
                        agent.app.connection.sync.trigger()
                nudged = now
            sleep(0.5)
        return False

    def statuses(self) -> list[DeviceStatus]:
        return [agent.status() for agent in self.agents]

    def _halt(self) -> None:
        """Stop the frame and updater threads (the agents' own sync and outbox threads go on)."""
        self.stop.set()
        for thread in self._threads:
            thread.join(120)

    def close(self) -> None:
        self._halt()
        with ThreadPoolExecutor(16) as pool:  # each close sends a last heartbeat
            list(pool.map(Agent.close, self.agents))


def _wait(future: Future[float]) -> float:
    try:
        return future.result()
    except Exception:  # tick() handles the expected failures; anything else is retried later
        log.exception("updater step failed")
        return 30.0
