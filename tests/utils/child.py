"""Python code run in a fresh interpreter, for what a process loads or prints from its start."""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any


def last_json_line(code: str, timeout_s: float = 120) -> Any:
    """Run `code` with this interpreter in a new process; the JSON of the last line it prints (it must exit 0)."""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=timeout_s)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])
