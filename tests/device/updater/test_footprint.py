"""The updater runs beside the inference service on a 512 MB board: its process must not load the
inference stack (numpy, the TFLite runtime, PIL) nor the sync client's (aiohttp, sqlite-utils), nor the Docker
SDK before the watchdog restarts a container."""

from __future__ import annotations

import json
import subprocess
import sys

HEAVY = ("numpy", "ai_edge_litert", "tflite_runtime", "PIL", "aiohttp", "sqlite_utils", "docker", "requests")


def test_the_updater_command_loads_neither_the_inference_nor_the_sync_stack(tmp_path) -> None:
    config = tmp_path / "device.json"
    config.write_text(json.dumps({"device": {"data_dir": str(tmp_path), "health_port": 9}}))
    code = (
        "import sys, json\n"
        "from device.cli import build_parser\n"
        "from device.updater.cli import settings_from\n"
        "from device.updater.machine import Updater\n"
        f"args = build_parser().parse_args(['updater', '--config', {str(config)!r}, '--once'])\n"
        "updater = Updater(settings_from(args, {}))\n"
        "updater.recover()\n"
        f"print(json.dumps(sorted(m for m in {HEAVY!r} if m in sys.modules)))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout.strip().splitlines()[-1]) == []
