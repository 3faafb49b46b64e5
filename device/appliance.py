"""The appliance as `tinylcm run` starts it: pipeline, outbox, health, provisioning and sync, until SIGTERM.

The frame loop owns the pipeline; the sync thread hands validated labels over through a queue,
so the adapter is only ever touched by the frame loop.
"""

from __future__ import annotations

import logging
import os
import queue
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from contract.atomic import read_json, write_json_atomic
from device.adapt.labels import read_record, refusal
from device.bundle import factory_bundle
from device.capture import open_source
from device.config import Config, overlap_enabled
from device.errors import TinyLCMError
from device.health import HealthServer
from device.outbox import Outbox
from device.outbox.outbox import outbox_settings_from
from device.pipeline.persist import load_state, save_state
from device.pipeline.pipeline import Pipeline
from device.pipeline.result import Result
from device.provision import Provisioner, ProvisioningStatus, ProvisionSettings
from device.service import Runner, alarm_record
from device.sync.service import SyncService
from device.sync.settings import sync_settings_from

log = logging.getLogger(__name__)
SAVE_EVERY = 200  # frames between two saves of the detectors' and adapter's state
RELOAD_CHECK_EVERY = 25  # frames between two looks at where models/current points
HEALTH_WINDOW = 1000  # recent frames behind the latency percentiles and the drift-alarm rate
METRICS_EVERY_S = 30.0  # between two metric records (latency, confidence, drift-alarm rate) in the outbox


def bundle_path(config: Config, announce: bool = True) -> Path:
    """The configured bundle, else the factory one; `announce` says so (once, at start: the frame loop asks often)."""
    configured = config.under_data_dir(config.feature_extractor.bundle)
    if configured.exists():
        return configured
    if announce:
        log.warning("bundle %s does not exist; starting on the factory bundle", configured)
    return factory_bundle()


class Appliance:
    """One device: build it from a `Config`, then `run()` until `stop` is set (SIGTERM sets it)."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.bundle_dir = bundle_path(config).resolve()
        self.pipeline = Pipeline.from_bundle(self.bundle_dir, config)
        self.outbox = Outbox(config.under_data_dir(config.outbox.path), outbox_settings_from(config.outbox))
        self.runner = Runner(self.pipeline, self.outbox, config.outbox, window=HEALTH_WINDOW)
        self.state_root = config.under_data_dir("state")
        self.labels: queue.SimpleQueue[dict[str, Any]] = queue.SimpleQueue()  # sync thread -> frame loop
        self.sync: SyncService | None = None
        self.provisioner: Provisioner | None = None
        self.last_frame = time.monotonic()
        self.bundle_error = ""  # why the bundle models/current points to could not be loaded
        self._sync_lock = threading.Lock()
        self._confidence = [0.0, 0]  # sum and count of the kNN confidence since the last metric record
        self._next_metrics = time.monotonic() + METRICS_EVERY_S
        self._desired: dict[str, Any] | None = None  # what desired.json holds, as last written by this process

    # -- the world outside: health, provisioning, sync ------------------------------------
    def snapshot(self) -> dict[str, Any]:
        """What /healthz and /metrics show."""
        age = time.monotonic() - self.last_frame
        state = {
            "status": "ok" if age < max(10.0, 5 / self.config.camera.fps) else "stalled",
            "model": self.pipeline.bundle.name, **self._health(), "adaptations": self.runner.stats.adaptations,
            "last_frame_age_s": round(age, 3), "outbox_depth": self.outbox.depth(), "sync": self.sync is not None,
            "bundle_error": self.bundle_error,
        }
        sync = self.sync.counters() if self.sync else {}  # sync_conflicts: integrity incidents since start
        return {**state, **sync, **(self.provisioner.health() if self.provisioner else {})}

    def _health(self) -> dict[str, Any]:
        """The figures rollout gates compare: recent latency, drift-alarm rate, error rate."""
        stats = self.runner.stats
        return {
            "model_version": self.pipeline.bundle.version, "frames": stats.frames, "skipped": stats.skipped,
            "drift_events": stats.drift_events, "latency_ms_p95": stats.latency_ms(95),
            "drift_alarm_rate": stats.drift_alarm_rate(), "drift_alarms": int(sum(stats.alarms)),
            "error_rate": round(stats.skipped / max(1, stats.frames + stats.skipped), 4),
            "lost_in_crash": self.outbox.lost_in_crash,  # records queued when a crash hit, over all restarts
        }

    def _sync_status(self) -> dict[str, Any]:
        health = self._health()
        update = read_json(self.state_root / "updater.json")
        health["healthy"] = not self.bundle_error and time.monotonic() - self.last_frame < 60
        health["watchdog"] = update.get("watchdog")  # "none": a hang of this service would go unrestarted
        return {"model_version": health.pop("model_version"), "update_state": update.get("state"),
                "health": health}

    def _on_desired(self, desired: dict[str, Any]) -> None:
        """The server's desired bundle, for the updater (a separate process) to act on.

        Written when it changes (and once per start), not on every heartbeat: each write is an fsync
        on the SD card. `received_at` is when this desired state first arrived.
        """
        if desired == self._desired:
            return
        write_json_atomic(self.state_root / "desired.json",
                          {**desired, "received_at": datetime.now(UTC).isoformat(timespec="seconds")})
        self._desired = dict(desired)

    def _start_sync(self, server_url: str) -> None:
        self.config.sync.server_url = server_url
        settings = sync_settings_from(self.config)
        with self._sync_lock:
            if settings is not None and self.sync is None:
                self.sync = SyncService(self.outbox, settings, status=self._sync_status,
                                        on_labels=self._queue_labels, on_desired=self._on_desired).start()
                log.info("syncing with %s", server_url)

    def _queue_labels(self, labels: list[dict[str, Any]]) -> None:
        for label in labels:
            self.labels.put(label)

    def _on_enrolled(self, status: ProvisioningStatus) -> None:
        if status.server_url:
            self._start_sync(status.server_url)

    def connect(self) -> None:
        """Sync with the configured server, or provision first (file on the card or balena variables)."""
        if self.config.sync.server_url:
            self._start_sync(self.config.sync.server_url)
            return
        settings = ProvisionSettings.for_data_dir(self.config.device.data_dir)
        self.provisioner = Provisioner(settings, environment=os.environ).start(self._on_enrolled)

    # -- the frame loop ---------------------------------------------------------------------
    def apply_labels(self) -> None:
        """Hand the operator's labels that arrived since the last frame to the adapter."""
        adapter = self.pipeline.adapter
        while not self.labels.empty():
            label = self.labels.get_nowait()
            if adapter is None or label.get("frame_seq") is None:
                log.warning("validated label %s cannot be applied here", label.get("id"))
                continue
            taken = read_record(label, self.pipeline.bundle)  # another model's frame, a forbidden class: refused
            if isinstance(taken, str):
                events = [refusal(label, taken)]
            else:
                events = adapter.apply_label(taken.seq, taken.label, taken.vector)
            for event in events:
                self.outbox.append("adaptation", {**event, "model_version": self.pipeline.bundle.version})
            self.pipeline.notice_classes()
            self.score_label(label)

    def score_label(self, label: dict[str, Any]) -> None:
        """A validated label says whether this model's prediction for its frame was right: the input of the
        label-based detectors (`accuracy`). Labels of another model's predictions, or without one, say nothing."""
        monitor, version = self.pipeline.monitor, self.pipeline.bundle.version
        predicted, frame_seq = label.get("predicted"), int(label["frame_seq"])
        if monitor is None or not isinstance(predicted, str) or label.get("model_version") != version:
            return
        for signal_ in monitor.update_label(predicted == str(label["label"]), frame_seq):
            log.warning("drift: %s %.2f > %.2f on validated labels", signal_.detector, signal_.statistic,
                        signal_.threshold)
            self.runner.stats.drift_events += 1
            self.outbox.append("drift_event", {**alarm_record(signal_), "frame_seq": frame_seq, "label": predicted,
                                               "model_version": version})

    def reload_if_switched(self, seq: int) -> None:
        """Load the bundle `models/current` points to once the updater flipped it; keep the old one if it fails."""
        target = bundle_path(self.config, announce=False).resolve()
        if target == self.bundle_dir:
            return
        try:
            pipeline = Pipeline.from_bundle(target, self.config)
        except TinyLCMError as exc:
            if self.bundle_error != str(exc):
                log.error("cannot switch to %s, staying on %s: %s", target, self.pipeline.bundle.version, exc)
            self.bundle_error = str(exc)
            return
        save_state(self.state_root, self.pipeline, seq)
        load_state(self.state_root, pipeline)
        log.info("switched from %s %s to %s %s", self.pipeline.bundle.name, self.pipeline.bundle.version,
                 pipeline.bundle.name, pipeline.bundle.version)
        self.pipeline = self.runner.pipeline = pipeline
        self.runner.stats.new_window()  # the gate figures in /healthz must be the new model's own
        self.bundle_dir, self.bundle_error = target, ""

    def resume(self) -> int:
        """Load the saved detector/adapter state; the sequence number the next frame gets."""
        return load_state(self.state_root, self.pipeline)

    def after_frame(self, result: Result) -> int:
        """The housekeeping after each frame: labels in, bundle switch, periodic save; the next seq."""
        self.last_frame = time.monotonic()
        seq = result.seq + 1
        self._confidence[0] += result.confidence
        self._confidence[1] += 1
        if self.last_frame >= self._next_metrics:
            self.record_metrics()
        self.apply_labels()
        if seq % RELOAD_CHECK_EVERY == 0:
            self.reload_if_switched(seq)
            self.report_updates()
        if seq % SAVE_EVERY == 0:
            save_state(self.state_root, self.pipeline, seq)
        return seq

    def report_updates(self) -> None:
        """Ship the updater's new transitions (it runs in another process) to the server as log records.

        A marker file remembers the last one shipped, written only once the records are committed: a
        crash in between repeats a transition line, never loses one."""
        marker = self.state_root / "updater_reported.json"
        events = read_json(self.state_root / "updater.json").get("events") or []
        shipped = int(read_json(marker).get("event_seq", 0))
        new = [e for e in events if isinstance(e, dict) and isinstance(e.get("seq"), int) and e["seq"] > shipped]
        if not new:
            return
        for event in new:
            level = "WARNING" if event.get("to") == "ROLLED_BACK" else "INFO"
            message = (f"updater: {event.get('from')} -> {event.get('to')} ({event.get('reason')}) "
                       f"{event.get('version') or ''}").rstrip()
            self.outbox.append("log", {"level": level, "logger": "tinylcm.updater", "message": message,
                                       "transition": event})
        if self.outbox.flush(10):
            write_json_atomic(marker, {"event_seq": max(e["seq"] for e in new)})

    def record_metrics(self) -> None:
        """A metric record for the server's charts: the gate figures and the mean confidence since the last one."""
        total, count = self._confidence
        health = self._health()
        metrics = {"latency_ms_p95": health["latency_ms_p95"], "drift_alarm_rate": health["drift_alarm_rate"],
                   "error_rate": health["error_rate"], "frames": health["frames"]}
        if count:
            metrics["confidence"] = round(total / count, 4)
        self.outbox.append("metric", {"metrics": metrics, "model_version": self.pipeline.bundle.version})
        self._confidence = [0.0, 0]
        self._next_metrics = time.monotonic() + METRICS_EVERY_S

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
        save_state(self.state_root, self.pipeline, seq)
        source.close()
        if self.provisioner is not None:
            self.provisioner.close()
        if self.sync is not None:
            self.sync.heartbeat(5)
            self.sync.close()
        if health is not None:
            health.close()
        self.outbox.close()
