"""Smaller parts: health reading from the real health server, device detection, smoke test, CLI."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from device.errors import SmokeTestError, TargetMismatchError
from device.health import HealthServer
from device.updater.health import HealthSample, read_health
from device.updater.smoke import run_smoke_test
from device.updater.target import DeviceProfile, check_spec, detect_device_type, parse_spec
from tests.device.updater.fakes import V2, variant
from tests.device.updater.tuf_server import Mirror, custom_field


def test_read_health_from_the_appliance_health_server() -> None:
    state = {"status": "ok", "model_version": "1.0.0", "frames": 12, "drift_events": 1, "skipped": 0,
             "last_frame_age_s": 0.2, "latency_ms_p95": 3.5, "drift_alarm_rate": 4.0}
    server = HealthServer(lambda: state, port=0).start()
    try:
        url = f"http://127.0.0.1:{server.port}/healthz"
        sample = read_health(url)
        assert sample.healthy and sample.frames == 12 and sample.latency_ms_p95 == 3.5
        state["status"] = "stalled"  # served with HTTP 503, still read
        assert read_health(url).reachable and not read_health(url).healthy
    finally:
        server.close()
    assert not read_health(url, timeout_s=1).reachable


@pytest.mark.parametrize("url", ["ftp://127.0.0.1/healthz", "127.0.0.1:8321/healthz", "http:///healthz",
                                 "http://127.0.0.1:99999/healthz"])
def test_a_health_url_that_is_not_one_reads_as_unreachable(url: str) -> None:
    assert read_health(url, timeout_s=1) == HealthSample(reachable=False)


def test_a_health_answer_that_is_not_a_json_object_reads_as_unreachable() -> None:
    server = HealthServer(lambda: {"status": "ok"}, port=0).start()
    try:  # /metrics answers 200 with text, not JSON; the query string is sent as given
        assert read_health(f"http://127.0.0.1:{server.port}/metrics?x=1") == HealthSample(reachable=False)
        assert read_health(f"http://127.0.0.1:{server.port}/healthz").healthy
        assert not read_health(f"http://127.0.0.1:{server.port}/healthz?x=1").reachable  # 404: not its path
    finally:
        server.close()


@pytest.mark.parametrize(("model", "kind"), [
    ("Raspberry Pi Zero 2 W Rev 1.0\0", "raspberrypi0-2w-64"),
    ("Raspberry Pi 3 Model B Plus Rev 1.3", "raspberrypi3"),
    ("Generic x86", None),
])
def test_device_type_from_device_tree(tmp_path: Path, model: str, kind: str | None) -> None:
    (tmp_path / "proc" / "device-tree").mkdir(parents=True)
    (tmp_path / "proc" / "device-tree" / "model").write_text(model)
    assert detect_device_type(tmp_path) == kind
    assert detect_device_type(tmp_path / "missing") is None


def test_unknown_device_takes_only_device_agnostic_bundles() -> None:
    unknown = DeviceProfile(device_type=None, tflite_version="2.18")
    with pytest.raises(TargetMismatchError, match="this device is None"):
        check_spec(parse_spec(custom_field(V2), "t"), unknown, "digits", "2.0.0")
    check_spec(parse_spec(custom_field(V2, device_types=[]), "t"), unknown, "digits", "2.0.0")
    with pytest.raises(TargetMismatchError, match="custom field"):
        parse_spec({"tinymlops": {"model": "digits"}}, "t")


def test_smoke_test_passes_v2_and_fails_a_broken_model(tmp_path: Path) -> None:
    assert run_smoke_test(V2, frames=4)["version"] == "2.0.0"
    broken = variant(tmp_path, "2.0.1", model=b"\0" * 4096)
    with pytest.raises(SmokeTestError, match="smoke test exited"):
        run_smoke_test(broken, frames=4)


def test_cli_once_and_status(data_dir: Path, mirror: Mirror) -> None:
    base = [sys.executable, "-m", "device.updater", "--data-dir", str(data_dir), "--server", mirror.url,
            "--health-url", "http://127.0.0.1:9/healthz", "--device-type", "raspberrypi0-2w-64"]
    once = subprocess.run([*base, "--once"], capture_output=True, text=True, timeout=60, check=True)
    assert json.loads(once.stdout)["state"] == "IDLE"
    assert (data_dir / "models" / "current").is_symlink()
    status = subprocess.run([*base, "--status"], capture_output=True, text=True, timeout=60, check=True)
    assert json.loads(status.stdout)["live_version"] == "1.0.0"
