"""One look at the inference service's `/healthz` (a 503 still carries the JSON body)."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from typing import Any

import urllib3

log = logging.getLogger(__name__)

_HTTP = urllib3.PoolManager(retries=False)  # one look: no retries (and no redirects) behind the caller's back


@dataclass(frozen=True)
class HealthSample:
    """What /healthz said; `reachable` False when it said nothing (service down, hung, or starting)."""

    reachable: bool
    status: str | None = None  # "ok" | "stalled"
    model_version: str | None = None
    frames: int = 0
    drift_events: int = 0
    latency_ms_p95: float | None = None
    drift_alarm_rate: float | None = None  # alarms per 1000 frames over a recent window
    drift_alarms: float | None = None  # how many alarms that rate rests on (the window restarts with each model)
    last_frame_age_s: float | None = None

    @property
    def healthy(self) -> bool:
        return self.reachable and self.status == "ok"

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> HealthSample:
        def number(key: str) -> float | None:
            value = data.get(key)
            return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None

        version = data.get("model_version")
        return cls(reachable=True, status=str(data.get("status")), frames=int(number("frames") or 0),
                   model_version=str(version) if version is not None else None,
                   drift_events=int(number("drift_events") or 0), latency_ms_p95=number("latency_ms_p95"),
                   drift_alarm_rate=number("drift_alarm_rate"), drift_alarms=number("drift_alarms"),
                   last_frame_age_s=number("last_frame_age_s"))


def read_health(url: str, timeout_s: float = 3.0) -> HealthSample:
    """GET `url` once; never raises for a down or broken service, which is exactly what is being watched."""
    try:
        response = _HTTP.request("GET", url, timeout=timeout_s, preload_content=False)
        try:
            body = response.read(1 << 16)  # whatever the status: a 503 carries the JSON too
        finally:
            response.release_conn()
    except (urllib3.exceptions.HTTPError, OSError, ValueError) as exc:
        log.debug("health %s unreachable: %s", url, exc)
        return HealthSample(reachable=False)
    try:
        data = json.loads(body)
    except ValueError:
        return HealthSample(reachable=False)
    return HealthSample.from_json(data) if isinstance(data, dict) else HealthSample(reachable=False)
