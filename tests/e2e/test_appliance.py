"""`tinylcm run` as shipped, against the real server: it enrolls, ships what it saw, takes desired state."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

from device.sync.identity import load_identity
from tests.utils.bundles import FACTORY
from tests.utils.wait import wait_until


def _wait(predicate: Callable[[], Any], what: str, proc: subprocess.Popen[bytes], timeout_s: float = 90) -> Any:
    def running_and() -> Any:
        assert proc.poll() is None, f"tinylcm run exited with {proc.returncode} while waiting for {what}"
        return predicate()

    return wait_until(running_and, timeout_s, what, interval=0.3)


def _identity(path: Path) -> Any:
    return load_identity(path) if path.exists() else None


def test_tinylcm_run_enrolls_syncs_and_receives_desired_state(server, server_db, tmp_path: Path) -> None:
    data = tmp_path / "data"
    config = tmp_path / "device.json"
    config.write_text(json.dumps({
        "device": {"data_dir": str(data), "health_port": 0, "name": "e2e-appliance"},
        "camera": {"source": "digits", "fps": 60, "drift": "unseen@150", "seed": 2},
        "feature_extractor": {"bundle": str(FACTORY)},
        "sync": {"server_url": server.url, "enrollment_token": server_db.enrollment_token(),
                 "interval_s": 1, "heartbeat_interval_s": 1},
    }))
    log = (tmp_path / "device.log").open("wb")
    proc = subprocess.Popen([sys.executable, "-m", "device.cli", "run", "--config", str(config)],
                            stdout=log, stderr=subprocess.STDOUT)
    try:
        identity = _wait(lambda: _identity(data / "state" / "sync_identity.json"), "enrollment", proc)
        device_id = identity.device_id
        kinds = _wait(lambda: (k := server_db.kinds(device_id)).get("drift_event") and k, "drift events", proc)
        assert kinds["prediction"] > 0

        request = urllib.request.Request(
            f"{server.url}/api/v1/devices/{device_id}/desired", method="PUT",
            data=json.dumps({"bundle_version": "1.0.0"}).encode(),
            headers={"Authorization": f"Bearer {server_db.operator_token()}", "Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            assert response.status == 200
        desired_file = data / "state" / "desired.json"

        def desired() -> dict[str, Any] | None:
            state = json.loads(desired_file.read_text()) if desired_file.exists() else {}
            return state if state.get("bundle_version") == "1.0.0" else None

        assert _wait(desired, "the desired state", proc)["received_at"]

        row = _wait(lambda: (d := server_db.device(device_id))["health"] and d, "a heartbeat", proc)
        assert {"latency_ms_p95", "drift_alarm_rate", "healthy"} <= set(row["health"])
    finally:
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(timeout=60)
        log.close()
    assert code == 0, (tmp_path / "device.log").read_text()[-3000:]
    server_db.wait_imported(device_id)
    seqs = server_db.seqs(device_id)
    assert len(seqs) == len(set(seqs))  # nothing twice
