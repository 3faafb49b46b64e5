"""Probation of a freshly switched model: pure judgement of health samples against the gates.

Progress lives in `UpdateRecord.probation` (persisted after every probe), so a reboot in the middle
continues the window instead of restarting or skipping it. Time is summed from monotonic deltas,
never from the wall clock, which may jump on a device without RTC.
"""

from __future__ import annotations

from dataclasses import dataclass

from device.updater.health import HealthSample
from device.updater.settings import ProbationGates


@dataclass(frozen=True)
class Verdict:
    decision: str  # "wait" | "commit" | "rollback"
    reason: str


WAIT = Verdict("wait", "")


def observe(progress: dict[str, float], sample: HealthSample, dt: float, version: str) -> None:
    """Fold one sample taken `dt` seconds after the previous one into `progress`."""
    progress["elapsed_s"] = progress.get("elapsed_s", 0.0) + dt
    fresh = sample.healthy and sample.model_version == version
    progress["unhealthy_s"] = 0.0 if fresh else progress.get("unhealthy_s", 0.0) + dt
    if not sample.reachable:
        return
    last = progress.get("last_frames")
    if last is not None and sample.frames < last:  # the counter went back: the service restarted
        progress["restarts"] = progress.get("restarts", 0.0) + 1
        progress["frames"] = progress.get("frames", 0.0) + sample.frames
    elif last is not None:
        progress["frames"] = progress.get("frames", 0.0) + sample.frames - last
    progress["last_frames"] = float(sample.frames)
    if sample.model_version != version:
        progress["wrong_version"] = progress.get("wrong_version", 0.0) + 1


HEALTH_WINDOW = 1000  # frames behind the service's drift-alarm rate (device.appliance.HEALTH_WINDOW)


def judge(progress: dict[str, float], sample: HealthSample, gates: ProbationGates,
          baseline: dict[str, float], version: str) -> Verdict:
    """Rollback on crash loop, missing heartbeat, wrong model, latency or drift beyond the gates; else wait/commit."""
    if progress.get("restarts", 0) > gates.max_restarts:
        return Verdict("rollback", f"crash_loop: {progress['restarts']:.0f} restarts")
    if progress.get("unhealthy_s", 0.0) >= gates.heartbeat_timeout_s:
        return Verdict("rollback", f"heartbeat_missing: no healthy heartbeat for {progress['unhealthy_s']:.0f} s")
    if sample.reachable and sample.model_version not in (None, version) and progress.get("wrong_version", 0) >= 3:
        return Verdict("rollback", f"wrong_model: the service runs {sample.model_version}, not {version}")
    judged = progress.get("frames", 0.0) >= gates.min_gate_frames and sample.reachable
    gate = _latency_gate(gates, baseline)
    if judged and sample.latency_ms_p95 is not None and sample.latency_ms_p95 > gate:
        return Verdict("rollback", f"latency: p95 {sample.latency_ms_p95:.1f} ms > {gate:.1f} ms")
    gate = _drift_gate(gates, baseline)
    alarms = sample.drift_alarms if sample.drift_alarms is not None else \
        (sample.drift_alarm_rate or 0.0) * min(progress.get("frames", 0.0), HEALTH_WINDOW) / 1000
    if judged and sample.drift_alarm_rate is not None and sample.drift_alarm_rate > gate \
            and alarms >= gates.min_drift_alarms:
        return Verdict("rollback", f"drift_alarms: {sample.drift_alarm_rate:.1f}/1000 frames > {gate:.1f}")
    if progress.get("elapsed_s", 0.0) >= gates.window_s and progress.get("frames", 0.0) >= gates.min_frames:
        return Verdict("commit", f"healthy for {progress['elapsed_s']:.0f} s, {progress['frames']:.0f} frames")
    if progress.get("elapsed_s", 0.0) >= 3 * gates.window_s:
        frames, elapsed = progress.get("frames", 0.0), progress["elapsed_s"]
        return Verdict("rollback", f"too_few_frames: {frames:.0f} in {elapsed:.0f} s")
    return WAIT


def _latency_gate(gates: ProbationGates, baseline: dict[str, float]) -> float:
    previous = baseline.get("latency_ms_p95")
    return max(gates.latency_floor_ms, previous * gates.latency_factor if previous else 0.0)


def _drift_gate(gates: ProbationGates, baseline: dict[str, float]) -> float:
    previous = baseline.get("drift_alarm_rate")
    return max(gates.drift_rate_floor, previous * gates.drift_rate_factor if previous else 0.0)
