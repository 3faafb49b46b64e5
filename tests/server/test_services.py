"""`scripts/services up` is idempotent and prints nothing but `export` lines on stdout."""

from __future__ import annotations

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
