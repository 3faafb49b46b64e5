"""The health snapshot (/healthz) and the heartbeat's health, from the runner's figures and the outbox."""

import time

from device.appliance.health import Health
from tests.device.appliance.fakes import FakeOutbox, fake_runner


def _health(fps: float = 10.0) -> Health:
    runner = fake_runner("2.0.0")
    stats = runner.stats
    stats.frames, stats.skipped, stats.drift_events, stats.adaptations = 97, 3, 2, 5
    stats.latencies.extend([10.0] * 9 + [20.0])
    stats.alarms.extend([0] * 8 + [1, 1])
    return Health(runner, FakeOutbox(records=[("log", {})], lost_in_crash=4), fps)


def test_figures_are_the_gate_figures_of_the_recent_window() -> None:
    assert _health().figures() == {
        "model_version": "2.0.0", "frames": 97, "skipped": 3, "drift_events": 2, "latency_ms_p95": 15.5,
        "drift_alarm_rate": 200.0, "drift_alarms": 2, "error_rate": 0.03, "lost_in_crash": 4}


def test_snapshot_merges_links_after_the_own_fields_and_says_stalled_without_frames() -> None:
    health = _health()
    health.frame_seen()
    links = {"sync": True, "sync_conflicts": 0, "provisioning": "enrolled"}
    snapshot = health.snapshot("", links)
    assert list(snapshot)[:2] == ["status", "model"] and list(snapshot)[-4:] == [
        "sync", "bundle_error", "sync_conflicts", "provisioning"]
    assert (snapshot["status"], snapshot["model"], snapshot["adaptations"], snapshot["outbox_depth"]) == (
        "ok", "digits", 5, 1)
    assert links == {"sync": True, "sync_conflicts": 0, "provisioning": "enrolled"}  # the caller's dict untouched
    health.last_frame = time.monotonic() - 11
    snapshot = health.snapshot("broken", {"sync": False})
    assert (snapshot["status"], snapshot["bundle_error"], snapshot["sync"]) == ("stalled", "broken", False)
    assert snapshot["last_frame_age_s"] >= 11


def test_a_slow_camera_is_not_stalled_within_five_frame_periods() -> None:
    health = _health(fps=0.1)
    health.last_frame = time.monotonic() - 30
    assert health.snapshot("", {"sync": False})["status"] == "ok"


def test_status_carries_the_updaters_state_and_is_unhealthy_on_a_bundle_error_or_a_stall() -> None:
    health = _health()
    status = health.status("", {"state": "PROBATION", "watchdog": "none", "events": []})
    assert (status["model_version"], status["update_state"]) == ("2.0.0", "PROBATION")
    assert status["health"]["healthy"] is True and status["health"]["watchdog"] == "none"
    assert "model_version" not in status["health"] and status["health"]["frames"] == 97
    assert health.status("cannot load", {"state": "IDLE"})["health"]["healthy"] is False
    health.last_frame = time.monotonic() - 61
    status = health.status("", {})
    assert status["health"]["healthy"] is False and status["update_state"] is None
