"""The appliance as `tinylcm run` starts it: pipeline, outbox, health, provisioning and sync, until SIGTERM.

`Appliance` builds the parts (one module each in this package) and wires them; the frame loop drives
them through `after_frame`. The sync thread hands validated labels over through a queue (`LabelInbox`),
so the adapter is only ever touched by the frame loop.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping
from typing import Any

from device.appliance.connection import Connection
from device.appliance.desired import DesiredState
from device.appliance.drift import LabelDrift
from device.appliance.health import Health
from device.appliance.labels import LabelInbox
from device.appliance.metrics import MetricsRecorder
from device.appliance.reload import BundleWatch, bundle_path
from device.appliance.updates import UpdaterRelay
from device.capture import open_source
from device.config import Config, overlap_enabled
from device.health import HealthServer
from device.layout import DataLayout
from device.outbox import Outbox
from device.outbox.outbox import outbox_settings_from
from device.pipeline.persist import load_state, save_state
from device.pipeline.pipeline import Pipeline
from device.result import Result
from device.runner import Runner

log = logging.getLogger(__name__)
SAVE_EVERY = 200  # frames between two saves of the detectors' and adapter's state
RELOAD_CHECK_EVERY = 25  # frames between two looks at where models/current points (and at the updater's journal)
HEALTH_WINDOW = 1000  # recent frames behind the latency percentiles and the drift-alarm rate


class Appliance:
    """One device: build it from a `Config`, then `run()` until `stop` is set (SIGTERM sets it)."""

    def __init__(self, config: Config, environment: Mapping[str, str] | None = None) -> None:
        """`environment`: where `tinylcm run` was started (TINYMLOPS_SERVER_URL ...); only the CLI reads it."""
        self.config = config
        self.layout = DataLayout(config.device.data_dir)
        bundle_dir = bundle_path(config).resolve()
        self.outbox = Outbox(config.under_data_dir(config.outbox.path), outbox_settings_from(config.outbox))
        self.runner = Runner(Pipeline.from_bundle(bundle_dir, config), self.outbox, config.outbox,
                             window=HEALTH_WINDOW)
        self.health = Health(self.runner, self.outbox, config.camera.fps)
        self.bundle = BundleWatch(config, self.runner, bundle_dir, self.layout.state)
        self.labels = LabelInbox(self.runner, self.outbox, LabelDrift(self.runner, self.outbox).score)
        self.metrics = MetricsRecorder(self.outbox, self.health.figures)
        self.updates = UpdaterRelay(self.layout, self.outbox)
        self.connection = Connection(config, self.outbox, status=self._sync_status, on_labels=self.labels.put,
                                     on_desired=DesiredState(self.layout.desired), environment=environment)

    @property
    def pipeline(self) -> Pipeline:
        """The pipeline frames go through now (`BundleWatch` swaps it when the updater flips the bundle)."""
        return self.runner.pipeline

    # -- the world outside: health, provisioning, sync ------------------------------------
    def snapshot(self) -> dict[str, Any]:
        """What /healthz and /metrics show."""
        return self.health.snapshot(self.bundle.error, self.connection.health())

    def _sync_status(self) -> dict[str, Any]:
        """What each heartbeat carries: the health and the updater's state."""
        return self.health.status(self.bundle.error, self.updates.report())

    def connect(self) -> None:
        """Sync with the configured server, or provision first (file on the card or balena variables)."""
        self.connection.connect()

    # -- the frame loop ---------------------------------------------------------------------
    def resume(self) -> int:
        """Load the saved detector/adapter state; the sequence number the next frame gets."""
        return load_state(self.layout.state, self.pipeline)

    def after_frame(self, result: Result) -> int:
        """The housekeeping after each frame: labels in, bundle switch, periodic save; the next seq."""
        now = self.health.frame_seen()
        seq = result.seq + 1
        self.metrics.observe(result.confidence, now)
        self.labels.apply()
        if seq % RELOAD_CHECK_EVERY == 0:
            self.bundle.check(seq)
            self.updates.ship()
        if seq % SAVE_EVERY == 0:
            save_state(self.layout.state, self.pipeline, seq)
        return seq

    def run(self, stop: threading.Event | None = None) -> int:
        """Capture and process frames until the source ends or `stop` is set; state is saved on the way out."""
        cfg = self.config
        if stop is not None:
            self.runner.stop = stop
        source = open_source(cfg.camera.source, drift=cfg.camera.drift, seed=cfg.camera.seed,
                             size=self.pipeline.bundle.frame_size, fps=cfg.camera.fps,
                             realtime=cfg.camera.realtime)
        health = HealthServer(self.snapshot, cfg.device.health_port).start()
        seq, overlap = self.resume(), overlap_enabled(cfg)
        log.info("running %s %s on %s (%s); health on 127.0.0.1:%d", self.pipeline.bundle.name,
                 self.pipeline.bundle.version, cfg.camera.source,
                 "decided on a second thread while the interpreter runs" if overlap else "sequential", health.port)
        self.connect()
        try:
            for result in self.runner.run(source, start_seq=seq, overlap=overlap):
                seq = self.after_frame(result)
        finally:
            self.close(seq, source, health)
        log.info("stopped after %d frames", self.runner.stats.frames)
        return 0

    def close(self, seq: int, source: Any, health: HealthServer | None = None) -> None:
        """Save the state, stop capturing, provisioning, sync and the health server, close the outbox."""
        save_state(self.layout.state, self.pipeline, seq)
        source.close()
        self.connection.close()
        if health is not None:
            health.close()
        self.outbox.close()
