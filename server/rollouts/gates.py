"""Health gates: from the wave's devices' latest heartbeats to pass, wait or breach, with the reason.

Rates are means over the devices that soaked on the new bundle; latency is compared with what the
same devices reported on their previous bundle; devices that failed, or are still pending at the
wave's deadline, count as unhealthy.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from statistics import fmean
from typing import Any

from server.rollouts.states import DeviceState


@dataclass(frozen=True)
class Observation:
    """One device of the rollout as the controller sees it."""

    device_id: str
    state: str  # a DeviceState: assigned, updating, updated, failed
    switched_at: datetime | None
    healthy: bool | None
    drift_alarm_rate: float | None  # alarms per 1000 frames
    error_rate: float | None
    latency_ms_p95: float | None
    baseline_p95_ms: float | None


@dataclass(frozen=True)
class Verdict:
    decision: str  # wait, pass, breach
    reason: str
    figures: dict[str, Any] = field(default_factory=dict)


def _mean(values: list[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return round(fmean(present), 4) if present else None


def _figures(soaked: list[Observation], total: int) -> dict[str, Any]:
    pairs = [(o.latency_ms_p95, o.baseline_p95_ms) for o in soaked if o.latency_ms_p95 and o.baseline_p95_ms]
    ratio = round(sum(p[0] for p in pairs) / sum(p[1] for p in pairs), 4) if pairs else None
    healthy = sum(1 for o in soaked if o.healthy is True)
    return {"devices": total, "soaked": len(soaked), "healthy": healthy,
            "healthy_fraction": round(healthy / total, 4) if total else 1.0,
            "drift_alarm_rate": _mean([o.drift_alarm_rate for o in soaked]),
            "error_rate": _mean([o.error_rate for o in soaked]), "p95_latency_ratio": ratio}


def _breaches(gates: dict[str, Any], figures: dict[str, Any]) -> list[str]:
    found = []
    for gate, figure in (("max_drift_alarm_rate", "drift_alarm_rate"), ("max_error_rate", "error_rate"),
                         ("max_p95_latency_ratio", "p95_latency_ratio")):
        limit, value = gates.get(gate), figures[figure]
        if limit is not None and value is not None and value > limit:
            found.append(f"{figure} {value} > {gate} {limit}")
    minimum = gates.get("min_healthy_fraction")
    if minimum is not None and figures["healthy_fraction"] < minimum:
        found.append(f"healthy_fraction {figures['healthy_fraction']} < min_healthy_fraction {minimum}")
    return found


def evaluate(gates: dict[str, Any], devices: list[Observation], soak_s: float, now: datetime,
             deadline_passed: bool) -> Verdict:
    """Decide for the devices assigned so far."""
    total = len(devices)
    failed = sum(1 for o in devices if o.state == DeviceState.failed)
    minimum = gates.get("min_healthy_fraction") or 0.0
    if total and (total - failed) / total < minimum:  # not failed/total > 1 - minimum: 1 - 0.9 < 0.1
        return Verdict("breach", f"{failed} of {total} devices rolled back the bundle themselves",
                       {"devices": total, "failed": failed})
    soak = timedelta(seconds=soak_s)
    soaked = [o for o in devices if o.state == DeviceState.updated and o.switched_at and o.switched_at + soak <= now]
    pending = total - failed - len(soaked)
    if pending and not deadline_passed:
        return Verdict("wait", f"{pending} of {total} devices still updating or soaking")
    figures = {**_figures(soaked, total), "failed": failed, "pending": pending}
    breaches = _breaches(gates, figures)
    if breaches:
        return Verdict("breach", "; ".join(breaches), figures)
    return Verdict("pass", f"every gate held for {len(soaked)} soaked devices", figures)
