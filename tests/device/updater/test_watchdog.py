"""Watchdog: restarts a hung service after `stale_after_s`, never more often than the rate bound allows."""

from __future__ import annotations

import json
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from device.errors import ServerRefusedError, ServerUnavailableError
from device.updater import BalenaRestarter, ProcessRestarter, Watchdog
from device.updater.health import HealthSample
from tests.device.updater.fakes import FakeInference, make_updater

HEALTHY = HealthSample(reachable=True, status="ok", model_version="1", frames=1)
DOWN = HealthSample(reachable=False)


class Calls:
    def __init__(self) -> None:
        self.count = 0

    def restart(self) -> None:
        self.count += 1


def test_restarts_after_stale_period_with_bounded_rate() -> None:
    now = [0.0]
    calls = Calls()
    dog = Watchdog(calls, stale_after_s=10, max_restarts=2, per_s=100, clock=lambda: now[0])
    restarted = []
    for t in range(0, 200, 5):  # hung for 200 s
        now[0] = float(t)
        restarted.append(dog.observe(DOWN))
    assert [i * 5 for i, r in enumerate(restarted) if r] == [10, 20, 110, 120]
    assert calls.count == 4 and dog.suppressed > 0
    now[0] = 300.0
    assert not dog.observe(HEALTHY)


def test_healthy_heartbeats_keep_it_quiet() -> None:
    now = [0.0]
    calls = Calls()
    dog = Watchdog(calls, stale_after_s=10, clock=lambda: now[0])
    for t in range(100):
        now[0] = float(t)
        dog.observe(HEALTHY if t % 9 == 0 else DOWN)
    assert calls.count == 0


def test_updater_feeds_the_watchdog(data_dir: Path) -> None:
    calls = Calls()
    now = [0.0]
    health = FakeInference(data_dir / "models", down=True)
    updater = make_updater(data_dir, "http://127.0.0.1:9", health=health,
                           watchdog=Watchdog(calls, stale_after_s=3, clock=lambda: now[0]))
    for t in range(5):
        now[0] = float(t)
        updater.step()
    assert calls.count == 1


def test_process_restarter_replaces_the_child(tmp_path: Path) -> None:
    child = ProcessRestarter([sys.executable, "-c", "import time; time.sleep(60)"], stop_timeout_s=5)
    child.start()
    assert child.process is not None
    first = child.process
    child.restart()
    assert first.poll() is not None and child.process is not first and child.process.poll() is None
    child.stop()
    assert child.process.poll() is not None and child.starts == 2


@pytest.fixture
def supervisor() -> Iterator[tuple[str, list[dict[str, Any]]]]:
    seen: list[dict[str, Any]] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            seen.append({"path": self.path, "body": body})
            code = 200 if "apikey=KEY" in self.path else 503 if "apikey=BUSY" in self.path else 401
            self.send_response(code)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"OK")

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}", seen
    server.shutdown()
    server.server_close()


def test_balena_restarter_calls_the_supervisor(supervisor: tuple[str, list[dict[str, Any]]]) -> None:
    address, seen = supervisor
    BalenaRestarter(address, "KEY", "1234", "inference").restart()
    assert seen == [{"path": "/v2/applications/1234/restart-service?apikey=KEY",
                     "body": {"serviceName": "inference"}}]
    with pytest.raises(ServerRefusedError):
        BalenaRestarter(address, "WRONG", "1234", "inference").restart()
    with pytest.raises(ServerUnavailableError) as busy:
        BalenaRestarter(address, "BUSY", "1234", "inference").restart()
    assert busy.value.status == 503
    with pytest.raises(ServerUnavailableError, match="unreachable"):
        BalenaRestarter("http://127.0.0.1:9", "KEY", "1234", "inference", timeout_s=2).restart()
