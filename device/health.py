"""Local health endpoint for the updater and operators: `/healthz` (JSON) and `/metrics` (Prometheus text)."""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

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
                state = snapshot()
                if self.path == "/healthz":
                    body, ctype = json.dumps(state).encode(), "application/json"
                    code = 200 if state.get("status") == "ok" else 503
                elif self.path == "/metrics":
                    body, ctype, code = prometheus(state).encode(), "text/plain; version=0.0.4", 200
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


def prometheus(state: dict[str, Any]) -> str:
    """Numeric fields of the health snapshot as Prometheus gauges named `tinylcm_<field>`."""
    lines = []
    for key, value in sorted(state.items()):
        if isinstance(value, bool):
            value = int(value)
        if isinstance(value, int | float):
            lines.append(f"tinylcm_{key} {value}")
    lines.append(f"tinylcm_scrape_time_seconds {time.time():.3f}")
    return "\n".join(lines) + "\n"
