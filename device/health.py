"""Local health endpoint for the updater and operators: `/healthz` (JSON) and `/metrics` (Prometheus text).

`/metrics` goes through prometheus_client, a registry per server: each numeric field of the snapshot is a gauge
`tinylcm_<field>`, except the counts since start (`COUNTERS`), which are counters `tinylcm_<field>_total`.
prometheus_client is imported by the first scrape of `/metrics`, not at start: the updater reads `/healthz`
only, and a device nobody scrapes keeps the memory (its exposition pulls in wsgiref, urllib.request...).
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from prometheus_client.core import Metric

# Snapshot fields that only grow while the process runs (lost_in_crash: over all restarts, never lower).
COUNTERS = frozenset({"frames", "skipped", "drift_events", "drift_alarms", "adaptations", "lost_in_crash",
                      "sync_conflicts", "sync_delivered", "sync_packages", "provisioning_attempts"})

log = logging.getLogger(__name__)


class HealthServer:
    """Serves `snapshot()` on 127.0.0.1:`port`; `status` is "ok" while frames keep coming."""

    def __init__(self, snapshot: Callable[[], dict[str, Any]], port: int, host: str = "127.0.0.1") -> None:
        self._snapshot = snapshot
        handler = self._handler()
        self._server = ThreadingHTTPServer((host, port), handler)
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, name="health", daemon=True)

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        snapshot = self._snapshot

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
                if self.path == "/healthz":
                    state = snapshot()
                    body, ctype = json.dumps(state).encode(), "application/json"
                    code = 200 if state.get("status") == "ok" else 503
                elif self.path == "/metrics":
                    (body, ctype), code = exposition(snapshot), 200
                else:
                    body, ctype, code = b"not found\n", "text/plain", 404
                self.send_response(code)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
                log.debug(format, *args)

        return Handler

    def start(self) -> HealthServer:
        self._thread.start()
        return self

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


class SnapshotCollector:
    """The numeric fields of `snapshot()`, read at each scrape (a prometheus_client collector)."""

    def __init__(self, snapshot: Callable[[], dict[str, Any]]) -> None:
        self._snapshot = snapshot

    def collect(self) -> Iterator[Metric]:
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        for key, value in sorted(self._snapshot().items()):
            if isinstance(value, bool):
                value = int(value)
            if not isinstance(value, int | float):
                continue
            if key in COUNTERS:
                yield CounterMetricFamily(f"tinylcm_{key}", f"{key}, a count (health snapshot)", value=value)
            else:
                yield GaugeMetricFamily(f"tinylcm_{key}", f"{key} (health snapshot)", value=value)
        yield GaugeMetricFamily("tinylcm_scrape_time_seconds", "Unix time of this scrape", value=time.time())


def exposition(snapshot: Callable[[], dict[str, Any]]) -> tuple[bytes, str]:
    """The Prometheus text exposition of `snapshot()` read now, and its content type."""
    from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

    registry = CollectorRegistry()
    registry.register(SnapshotCollector(snapshot))
    return generate_latest(registry), CONTENT_TYPE_LATEST


def prometheus(state: dict[str, Any]) -> str:
    """The Prometheus text exposition of a health snapshot `state`."""
    return exposition(lambda: state)[0].decode()
