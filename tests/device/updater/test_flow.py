"""The whole update against a real TUF repository over loopback: commit, rollback, report."""

from __future__ import annotations

import json
from pathlib import Path

from contract.bundle import load_bundle
from device.updater import State, update_report
from tests.device.updater.fakes import FakeInference, desire, drive, live_version, make_updater
from tests.device.updater.tuf_server import Mirror


def test_good_bundle_is_committed(data_dir: Path, mirror: Mirror) -> None:
    updater = make_updater(data_dir, mirror.url, real_smoke=True)
    assert live_version(data_dir) == "1.0.0" and updater.slots.live() == "slot-a"
    desire(data_dir)
    assert drive(updater) is State.COMMITTED
    assert live_version(data_dir) == "2.0.0" and updater.slots.live() == "slot-b"
    load_bundle(data_dir / "models" / "current")
    saved = json.loads((data_dir / "state" / "updater.json").read_text())
    assert [h["to"] for h in saved["history"]] == ["DOWNLOADING", "STAGED", "SWITCHED", "PROBATION", "COMMITTED"]
    assert saved["live_version"] == "2.0.0" and saved["previous_slot"] == "slot-a"
    report = update_report(data_dir)
    assert report["state"] == "COMMITTED" and [e["seq"] for e in report["events"]] == [1, 2, 3, 4, 5]
    assert all(auth is None or auth.startswith("bytes=") for _, auth in mirror.requests)


def test_nothing_desired_stays_idle(data_dir: Path, mirror: Mirror) -> None:
    updater = make_updater(data_dir, mirror.url)
    assert drive(updater, max_steps=5) is State.IDLE
    desire(data_dir, version="1.0.0", target="digits/1.0.0/bundle.tar")  # already running it
    assert drive(updater, max_steps=5) is State.IDLE
    assert mirror.requests == []


def test_drift_alarms_roll_back(data_dir: Path, mirror: Mirror) -> None:
    health = FakeInference(data_dir / "models", by_version={"2.0.0": {"drift_alarm_rate": 300.0}})
    updater = make_updater(data_dir, mirror.url, health=health)
    desire(data_dir)
    assert drive(updater) is State.ROLLED_BACK
    assert live_version(data_dir) == "1.0.0" and updater.slots.live() == "slot-a"
    assert updater.record.reason is not None and updater.record.reason.startswith("drift_alarms")
    assert "digits/2.0.0/bundle.tar" in updater.record.rejected
    assert drive(updater, max_steps=5) is State.ROLLED_BACK  # the same desired target is not retried


def test_latency_relative_to_previous_model_rolls_back(data_dir: Path, mirror: Mirror) -> None:
    health = FakeInference(data_dir / "models", by_version={"1.0.0": {"latency_ms_p95": 40.0},
                                                            "2.0.0": {"latency_ms_p95": 95.0}})
    updater = make_updater(data_dir, mirror.url, health=health)
    desire(data_dir)
    assert drive(updater) is State.ROLLED_BACK
    assert updater.record.baseline == {"latency_ms_p95": 40.0, "drift_alarm_rate": 2.0}
    assert updater.record.reason is not None and updater.record.reason.startswith("latency")


def test_stalled_service_rolls_back(data_dir: Path, mirror: Mirror) -> None:
    health = FakeInference(data_dir / "models", by_version={"2.0.0": {"status": "stalled"}})
    updater = make_updater(data_dir, mirror.url, health=health)
    desire(data_dir)
    drive(updater, until=lambda u: u.record.state is State.SWITCHED)
    assert drive(updater) is State.ROLLED_BACK
    assert updater.record.reason is not None and updater.record.reason.startswith("reload_timeout")
    assert live_version(data_dir) == "1.0.0"


def test_missing_heartbeat_in_probation_rolls_back(data_dir: Path, mirror: Mirror) -> None:
    health = FakeInference(data_dir / "models")
    updater = make_updater(data_dir, mirror.url, health=health)
    desire(data_dir)
    drive(updater, until=lambda u: u.record.state is State.PROBATION)
    health.down = True
    assert drive(updater) is State.ROLLED_BACK
    assert updater.record.reason is not None and updater.record.reason.startswith("heartbeat_missing")


def test_crash_loop_rolls_back(data_dir: Path, mirror: Mirror) -> None:
    health = FakeInference(data_dir / "models", frames_per_probe=1)
    updater = make_updater(data_dir, mirror.url, health=health)
    desire(data_dir)
    drive(updater, until=lambda u: u.record.state is State.PROBATION)
    for _ in range(3):  # the service restarts: its frame counter starts again
        updater.step()
        health.frames = 0
        updater.step()
    assert updater.record.state is State.ROLLED_BACK
    assert updater.record.reason is not None and updater.record.reason.startswith("crash_loop")


def test_new_desired_version_after_rollback_installs(data_dir: Path, mirror: Mirror) -> None:
    health = FakeInference(data_dir / "models", by_version={"2.0.0": {"drift_alarm_rate": 300.0}})
    updater = make_updater(data_dir, mirror.url, health=health)
    desire(data_dir)
    assert drive(updater) is State.ROLLED_BACK
    health.by_version.clear()
    updater.record.rejected.clear()  # an operator re-assigns it (the server would publish a new version)
    assert drive(updater) is State.COMMITTED
    assert live_version(data_dir) == "2.0.0"


def test_run_loop_until_stopped(data_dir: Path, mirror: Mirror) -> None:
    import threading

    from tests.device.updater.fakes import settings_for

    settings = settings_for(data_dir, mirror.url, poll_interval_s=0.01, probe_interval_s=0.01)
    updater = make_updater(data_dir, mirror.url, settings=settings)
    desire(data_dir)
    stop = threading.Event()
    thread = threading.Thread(target=updater.run, args=(stop,))
    thread.start()
    try:
        for _ in range(3000):
            if updater.record.state is State.COMMITTED:
                break
            stop.wait(0.01)
    finally:
        stop.set()
        thread.join(30)
    assert updater.record.state is State.COMMITTED and not thread.is_alive()
