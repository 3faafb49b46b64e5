"""`tinylcm updater --reexec-after-download`: a real updater process downloads a real update from a signed
repository over loopback, re-executes itself once the round is over, and finishes the update from its journal
without the TUF client (python-tuf, securesystemslib, cryptography) in memory."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from threading import Thread
from typing import Any

import pytest

from device.updater.record import Journal, State
from tests.device.updater.fakes import DEVICE, desire, live_version
from tests.device.updater.tuf_server import Mirror

TUF = ("tuf", "securesystemslib", "cryptography")


class HealthStandIn:
    """/healthz of an inference service that follows `models/current`: healthy, its frames counting up."""

    def __init__(self, models: Path) -> None:
        frames = {"n": 0}

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802
                frames["n"] += 30
                version = json.loads((models / "current" / "bundle.json").read_text())["version"]
                body = json.dumps({"status": "ok", "model_version": version, "frames": frames["n"],
                                   "drift_events": 0, "latency_ms_p95": 4.0, "drift_alarm_rate": 2.0}).encode()
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        Thread(target=self.server.serve_forever, daemon=True).start()


@pytest.fixture
def health(data_dir: Path) -> Iterator[HealthStandIn]:
    standin = HealthStandIn(data_dir / "models")
    yield standin
    standin.server.shutdown()
    standin.server.server_close()


def _updater_process(data_dir: Path, mirror: Mirror, health: HealthStandIn, log: Path, *flags: str) -> Any:
    """`tinylcm updater` as a process; after every step (in each process image) it appends the journal state
    and the TUF modules it has loaded to `log`, and one line when it starts."""
    config = data_dir / "device.json"
    config.write_text(json.dumps({
        "device": {"data_dir": str(data_dir), "health_port": health.port},
        "updater": {"server_url": mirror.url, "device_type": DEVICE.device_type, "probation_s": 3,
                    "poll_interval_s": 0.5, "docker_socket": str(data_dir / "no-docker.sock")}}))
    code = (
        "import json, os, sys\n"
        "from device.cli import main\n"
        "from device.updater.machine import Updater\n"
        f"log = {str(log)!r}\n"
        "def note(**kv):\n"
        "    with open(log, 'a') as f: f.write(json.dumps({'pid': os.getpid(), **kv}) + '\\n')\n"
        "note(event='start')\n"
        "step = Updater.step\n"
        "def noted(self):\n"
        "    delay = step(self)\n"
        f"    note(event='step', state=str(self.record.state), tuf=sorted(m for m in {TUF!r} if m in sys.modules))\n"
        "    return delay\n"
        "Updater.step = noted\n"
        f"sys.exit(main(['updater', '--config', {str(config)!r}, *{list(flags)!r}]))\n"
    )
    return subprocess.Popen([sys.executable, "-c", code], stderr=subprocess.PIPE, text=True)


def _run_until_committed(data_dir: Path, proc: Any, log: Path) -> list[dict[str, Any]]:
    journal = Journal(data_dir / "state" / "updater.json")
    deadline = time.monotonic() + 180
    try:
        while time.monotonic() < deadline and proc.poll() is None:
            path = data_dir / "state" / "updater.json"
            if path.exists() and journal.load().state is State.COMMITTED:
                time.sleep(1.5)  # a few idle steps after the commit
                break
            time.sleep(0.2)
        maps = Path(f"/proc/{proc.pid}/maps").read_text() if proc.poll() is None else ""
        status = Path(f"/proc/{proc.pid}/status").read_text() if proc.poll() is None else ""
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err[-3000:]
    assert journal.load().state is State.COMMITTED, err[-3000:]
    entries = [json.loads(line) for line in log.read_text().splitlines()]
    blocked = next((line.split()[1] for line in status.splitlines() if line.startswith("SigBlk:")), "")
    return [*entries, {"event": "maps", "cryptography_rust": "_rust.abi3.so" in maps,
                       "blocked": int(blocked or "1", 16)}]


def test_the_updater_reexecs_after_the_round_and_finishes_the_update_without_the_tuf_client(
        data_dir: Path, mirror: Mirror, health: HealthStandIn, tmp_path: Path) -> None:
    desire(data_dir)
    log = tmp_path / "steps.jsonl"
    proc = _updater_process(data_dir, mirror, health, log, "--reexec-after-download")
    *entries, maps = _run_until_committed(data_dir, proc, log)
    starts = [i for i, e in enumerate(entries) if e["event"] == "start"]
    assert [entries[i]["pid"] for i in starts] == [proc.pid, proc.pid]  # one re-exec, the same process
    first, second = entries[: starts[1]], entries[starts[1] :]
    # the first image downloaded (its client loaded) and staged; the second went on from STAGED
    assert [e["state"] for e in first if e["event"] == "step"][-1] == "STAGED"
    assert set(TUF) <= set(first[-1]["tuf"])
    steps = [e for e in second if e["event"] == "step"]
    assert steps[0]["state"] == "SWITCHED" and {e["state"] for e in steps} >= {"PROBATION", "COMMITTED"}
    assert all(e["tuf"] == [] for e in steps)
    assert not maps["cryptography_rust"]  # cryptography's Rust extension is not mapped any more
    assert maps["blocked"] == 0  # SIGTERM/SIGINT, blocked across the exec, are the new image's again (it stopped: rc 0)
    # the update completed: the new slot live, the journal's health watch passed, committed
    record = Journal(data_dir / "state" / "updater.json").load()
    assert record.live_version == "2.0.0" and live_version(data_dir) == "2.0.0"
    assert (data_dir / "models" / "current").readlink().name == record.slot == "slot-b"
    reasons = [h.get("reason") for h in record.history] if record.history else []
    assert "verified" in reasons and "reloaded" in reasons


def test_without_the_flag_the_updater_keeps_the_tuf_client_after_the_round(
        data_dir: Path, mirror: Mirror, health: HealthStandIn, tmp_path: Path) -> None:
    desire(data_dir)
    log = tmp_path / "steps.jsonl"
    proc = _updater_process(data_dir, mirror, health, log)
    *entries, maps = _run_until_committed(data_dir, proc, log)
    assert [e["pid"] for e in entries if e["event"] == "start"] == [proc.pid]
    assert set(TUF) <= set(entries[-1]["tuf"]) and maps["cryptography_rust"]


def test_a_round_is_over_once_staged_and_not_while_a_failed_round_waits_for_its_retry(
        data_dir: Path, mirror: Mirror) -> None:
    from tests.device.updater.fakes import make_updater

    updater = make_updater(data_dir, mirror.url)
    assert not updater.round_over()  # idle: no client loaded
    desire(data_dir)
    updater.step()  # IDLE -> DOWNLOADING
    mirror.target_status = [503] * 3  # every try of this round fails
    updater.tick()
    assert updater.record.state is State.DOWNLOADING and updater.client_loaded
    assert not updater.round_over()  # the retry's backoff is this process's: keep it (and the client)
    updater.tick()  # the retry downloads
    assert updater.record.state is State.STAGED and updater.round_over()


def test_with_a_child_process_watchdog_the_flag_is_ignored(tmp_path: Path) -> None:
    """The inference service is the updater's child there: a new process image would not know it, and start a
    second one. The updater runs without re-executing (and says so)."""

    config = tmp_path / "device.json"
    config.write_text(json.dumps({"device": {"data_dir": str(tmp_path), "health_port": 9}}))
    code = (
        "import sys, json\n"
        "from device.cli import main\n"
        "from device.updater.machine import Updater\n"
        "def run_once(self, stop, on_round_over=None):\n"
        "    print(json.dumps({'reexec': on_round_over is not None}))\n"
        "Updater.run = run_once\n"
        f"main(['updater', '--config', {str(config)!r}, '--docker-socket', {str(tmp_path / 'none')!r},\n"
        "      '--inference-cmd', 'sleep 60', '--reexec-after-download'])\n"
        f"main(['updater', '--config', {str(config)!r}, '--docker-socket', {str(tmp_path / 'none')!r},\n"
        "      '--reexec-after-download'])\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert [json.loads(line) for line in done.stdout.splitlines()] == [{"reexec": False}, {"reexec": True}]
    assert "--reexec-after-download ignored" in done.stderr


def test_a_failed_exec_is_said_and_the_updater_goes_on_as_it_was(monkeypatch: pytest.MonkeyPatch,
                                                                  tmp_path: Path,
                                                                  caplog: pytest.LogCaptureFixture) -> None:
    import threading

    from device.updater.cli import STOP_SIGNALS, reexec_self

    monkeypatch.setattr(sys, "executable", str(tmp_path / "python-removed-by-an-upgrade"))
    before = signal.pthread_sigmask(signal.SIG_BLOCK, [])
    with caplog.at_level("ERROR", logger="tinylcm.updater"):
        assert reexec_self(threading.Event()) is False
    assert signal.pthread_sigmask(signal.SIG_BLOCK, []) == before  # SIGTERM/SIGINT not left blocked
    assert not set(STOP_SIGNALS) & signal.pthread_sigmask(signal.SIG_BLOCK, [])
    assert any("could not re-execute" in record.getMessage() for record in caplog.records)
    stop = threading.Event()
    stop.set()
    assert reexec_self(stop) is True  # a stop asked before: no exec, nothing to fall back from
