"""`scripts/services up` is idempotent and prints nothing but `export` lines on stdout."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_services_up_prints_exports(test_env: dict[str, str]) -> None:
    result = subprocess.run([str(ROOT / "scripts" / "services"), "up"], capture_output=True, text=True,
                            timeout=300, check=False)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines and all(re.fullmatch(r"export TINYMLOPS_TEST_[A-Z0-9_]+=\S+", line) for line in lines), lines
    exported = dict(line.removeprefix("export ").split("=", 1) for line in lines)
    assert {"TINYMLOPS_TEST_DATABASE_URL", "TINYMLOPS_TEST_S3_ENDPOINT", "TINYMLOPS_TEST_MLFLOW_URI"} <= set(exported)


def test_services_usage_error() -> None:
    result = subprocess.run([str(ROOT / "scripts" / "services"), "sideways"], capture_output=True, text=True,
                            timeout=60, check=False)
    assert result.returncode == 2 and result.stdout == "" and "usage" in result.stderr


def test_services_up_reports_what_it_started(test_env: dict[str, str], tmp_path: Path) -> None:
    started = tmp_path / "started"
    result = subprocess.run([str(ROOT / "scripts" / "services"), "up", "--started-file", str(started)],
                            capture_output=True, text=True, timeout=300, check=False)
    assert result.returncode == 0, result.stderr
    assert started.read_text() == ""  # every service already ran: nothing for the caller to stop


def test_services_down_refuses_unknown_names() -> None:
    result = subprocess.run([str(ROOT / "scripts" / "services"), "down", "everything"], capture_output=True,
                            text=True, timeout=60, check=False)
    assert result.returncode == 2 and "usage" in result.stderr


def _descendants(pid: int) -> list[int]:
    rows = subprocess.run(["ps", "-e", "-o", "pid=,ppid="], capture_output=True, text=True, check=True).stdout
    children: dict[int, list[int]] = {}
    for line in rows.splitlines():
        child, parent = map(int, line.split())
        children.setdefault(parent, []).append(child)
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def test_mlflow_server_runs_without_its_job_consumers(test_env: dict[str, str]) -> None:
    """MLflow 3 starts a job runner and eight consumer processes (~2 GB) unless told not to."""
    info = json.loads((ROOT / ".services" / "mlflow.json").read_text())
    assert test_env["TINYMLOPS_TEST_MLFLOW_URI"].endswith(f":{info['port']}")  # the server scripts/services runs
    assert len(_descendants(info["pid"])) <= 2  # its uvicorn worker (and at most one helper), no consumers
