"""Probation gates, judged exactly on sequences of health samples."""

from __future__ import annotations

from device.updater.health import HealthSample
from device.updater.probation import judge, observe
from device.updater.settings import ProbationGates

GATES = ProbationGates(window_s=10, min_frames=20, heartbeat_timeout_s=4, max_restarts=1, min_gate_frames=5,
                       latency_factor=2.0, latency_floor_ms=10.0, drift_rate_factor=3.0, drift_rate_floor=20.0)


def ok(frames: int, **extra: float) -> HealthSample:
    return HealthSample(reachable=True, status="ok", model_version="2", frames=frames, **extra)  # type: ignore[arg-type]


def run(samples: list[HealthSample], baseline: dict[str, float] | None = None) -> list[str]:
    progress: dict[str, float] = {"elapsed_s": 0.0, "frames": 0.0, "last_frames": 0.0}
    decisions = []
    for sample in samples:
        observe(progress, sample, 1.0, "2")
        decisions.append(judge(progress, sample, GATES, baseline or {}, "2").decision)
    return decisions


def test_commit_after_window_and_frames() -> None:
    assert run([ok(5 * i) for i in range(1, 12)]) == ["wait"] * 9 + ["commit"] * 2


def test_latency_gate_relative_to_previous_model() -> None:
    samples = [ok(10, latency_ms_p95=30.0), ok(20, latency_ms_p95=39.0), ok(30, latency_ms_p95=41.0)]
    assert run(samples, {"latency_ms_p95": 20.0}) == ["wait", "wait", "rollback"]
    assert run(samples) == ["rollback"] * 3  # no baseline: the absolute floor (10 ms) applies


def test_drift_gate_waits_for_enough_frames() -> None:
    samples = [ok(2, drift_alarm_rate=500.0), ok(4, drift_alarm_rate=500.0), ok(8, drift_alarm_rate=500.0)]
    assert run(samples, {"drift_alarm_rate": 5.0}) == ["wait", "wait", "rollback"]
    assert run([ok(10, drift_alarm_rate=19.0)], {"drift_alarm_rate": 1.0}) == ["wait"]


def test_drift_gate_needs_enough_alarms_to_be_evidence() -> None:
    # a good model that happened to alarm twice in its first 71 frames (28.2/1000) is not rolled back ...
    assert run([ok(71, drift_alarm_rate=28.2)], {"drift_alarm_rate": 2.0}) == ["wait"]
    # ... the same rate over 300 frames (8 alarms) is, as are the 3 alarms a bad bundle raises in its first 20 frames
    assert run([ok(20, drift_alarm_rate=150.0)], {"drift_alarm_rate": 2.0}) == ["rollback"]
    assert run([ok(300, drift_alarm_rate=28.2)], {"drift_alarm_rate": 2.0}) == ["rollback"]


def test_missing_heartbeat_and_crash_loop() -> None:
    down = HealthSample(reachable=False)
    assert run([ok(5), down, down, down, down]) == ["wait", "wait", "wait", "wait", "rollback"]
    assert run([ok(5), ok(10), ok(2), ok(7), ok(1)]) == ["wait", "wait", "wait", "wait", "rollback"]
    stalled = HealthSample(reachable=True, status="stalled", model_version="2", frames=5)
    assert run([ok(5), stalled, stalled, stalled, stalled, ok(6)])[-3:] == ["wait", "rollback", "wait"]


def test_the_alarm_count_the_service_reports_is_the_evidence() -> None:
    # the service's window started at the switch, before probation counted its first frame: its own count wins
    assert run([ok(25, drift_alarm_rate=100.0, drift_alarms=3)], {"drift_alarm_rate": 2.0}) == ["rollback"]
    assert run([ok(25, drift_alarm_rate=100.0, drift_alarms=2)], {"drift_alarm_rate": 2.0}) == ["wait"]
