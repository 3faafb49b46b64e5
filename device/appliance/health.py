"""The appliance's health: the snapshot /healthz and /metrics show, and the health part of the heartbeat."""

from __future__ import annotations

import time
from typing import Any

from device.outbox import Outbox
from device.runner import Runner

HEARTBEAT_STALL_S = 60.0  # without a frame for this long, the heartbeat says the device is not healthy


class Health:
    """Figures of the frame loop (`runner`) and the outbox; `frame_seen()` is called after every frame."""

    def __init__(self, runner: Runner, outbox: Outbox, fps: float) -> None:
        self.runner = runner
        self.outbox = outbox
        self.fps = fps
        self.last_frame = time.monotonic()

    def frame_seen(self) -> float:
        """Note a frame now; the monotonic time noted."""
        self.last_frame = time.monotonic()
        return self.last_frame

    def figures(self) -> dict[str, Any]:
        """The figures rollout gates compare: recent latency, drift-alarm rate, error rate."""
        stats = self.runner.stats
        return {
            "model_version": self.runner.pipeline.bundle.version, "frames": stats.frames, "skipped": stats.skipped,
            "drift_events": stats.drift_events, "latency_ms_p95": stats.latency_ms(95),
            "drift_alarm_rate": stats.drift_alarm_rate(), "drift_alarms": int(sum(stats.alarms)),
            "error_rate": round(stats.skipped / max(1, stats.frames + stats.skipped), 4),
            "lost_in_crash": self.outbox.lost_in_crash,  # records queued when a crash hit, over all restarts
        }

    def snapshot(self, bundle_error: str, links: dict[str, Any]) -> dict[str, Any]:
        """What /healthz and /metrics show; `links` is the sync and provisioning state (`"sync"` first)."""
        age = time.monotonic() - self.last_frame
        links = dict(links)
        state = {
            "status": "ok" if age < max(10.0, 5 / self.fps) else "stalled",
            "model": self.runner.pipeline.bundle.name, **self.figures(), "adaptations": self.runner.stats.adaptations,
            "last_frame_age_s": round(age, 3), "outbox_depth": self.outbox.depth(), "sync": links.pop("sync"),
            "bundle_error": bundle_error,
        }
        return {**state, **links}

    def status(self, bundle_error: str, update: dict[str, Any]) -> dict[str, Any]:
        """The heartbeat's body: the model version, the updater's state (`update`, its report) and the health."""
        health = self.figures()
        health["healthy"] = not bundle_error and time.monotonic() - self.last_frame < HEARTBEAT_STALL_S
        health["watchdog"] = update.get("watchdog")  # "none": a hang of this service would go unrestarted
        return {"model_version": health.pop("model_version"), "update_state": update.get("state"),
                "health": health}
