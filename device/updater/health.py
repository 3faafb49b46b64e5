"""One look at the inference service's `/healthz` (a 503 still carries the JSON body).

The look goes through the standard library's `http.client` (one connection per look, no retries and no
redirects): the updater probes at every step, and urllib3 on top of it would be loaded for that alone.
"""

from __future__ import annotations

import http.client
import json
import logging
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

log = logging.getLogger(__name__)
MAX_BODY = 1 << 16  # bytes of /healthz read; a larger answer is not one the service gives


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
        body = _get(url, timeout_s)
    except (http.client.HTTPException, OSError, ValueError) as exc:
        log.debug("health %s unreachable: %s", url, exc)
        return HealthSample(reachable=False)
    try:
        data = json.loads(body)
    except ValueError:
        return HealthSample(reachable=False)
    return HealthSample.from_json(data) if isinstance(data, dict) else HealthSample(reachable=False)


def _get(url: str, timeout_s: float) -> bytes:
    """The body (at most `MAX_BODY` bytes) of one GET of an http:// or https:// `url`, whatever the status."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"not an http(s) URL: {url!r}")
    kind = http.client.HTTPSConnection if parts.scheme == "https" else http.client.HTTPConnection
    conn = kind(parts.hostname, parts.port or (443 if parts.scheme == "https" else 80), timeout=timeout_s)
    try:
        path = parts.path or "/"
        conn.request("GET", f"{path}?{parts.query}" if parts.query else path)
        return conn.getresponse().read(MAX_BODY)  # whatever the status: a 503 carries the JSON too
    finally:
        conn.close()
