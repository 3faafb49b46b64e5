"""The updater runs beside the inference service on a 512 MB board: its process must not load the
inference stack (numpy, the TFLite runtime, PIL) nor the sync client's (aiohttp, sqlite-utils), nor the Docker
SDK before the watchdog restarts a container."""

from __future__ import annotations

import json

from tests.utils.child import last_json_line

HEAVY = ("numpy", "ai_edge_litert", "tflite_runtime", "PIL", "aiohttp", "sqlite_utils", "docker", "requests")
# What an idle updater leaves out too: the TUF client and its cryptography (loaded by a download round), urllib3
# (a balena restart, or the TUF fetcher), tenacity (a failed step's backoff), python-json-logger (--log-format json)
IDLE = ("tuf", "securesystemslib", "cryptography", "urllib3", "tenacity", "pythonjsonlogger")


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
    assert last_json_line(code) == []


def _idle_modules(tmp_path, argv: list[str], desired: dict | None = None) -> list[str]:
    """The modules of IDLE, not yet loaded by a process that ran `tinylcm updater` with `argv` to its first wait."""
    config = tmp_path / "device.json"
    config.write_text(json.dumps({"device": {"data_dir": str(tmp_path), "health_port": 9}}))
    if desired is not None:
        (tmp_path / "state").mkdir(exist_ok=True)
        (tmp_path / "state" / "desired.json").write_text(json.dumps(desired))
    code = (
        "import sys, json, threading\n"
        "from device.cli import main\n"
        "from device.updater.machine import Updater\n"
        "ran = Updater.run\n"
        "def run_until_idle(self, stop, on_round_over=None):\n"
        "    self.recover()\n"
        "    self.step()\n"
        f"    print(json.dumps(sorted(m for m in {IDLE!r} if m in sys.modules)))\n"
        "Updater.run = run_until_idle\n"
        f"sys.exit(main(['updater', '--config', {str(config)!r}, *{argv!r}]))\n"
    )
    return last_json_line(code)


def test_an_idle_updater_leaves_the_tuf_client_urllib3_and_tenacity_unloaded(tmp_path) -> None:
    assert _idle_modules(tmp_path, []) == []


def test_a_desired_bundle_loads_the_tuf_client_and_a_failed_round_the_backoff(tmp_path) -> None:
    """The same process with a bundle desired: the step goes to DOWNLOADING, and the next (not enrolled: no
    repository to ask) fails and backs off; what the idle one left out is loaded when it is needed."""
    desired = {"target": "digits/digits-2.0.0.tar.gz", "model": "digits", "bundle_version": "2.0.0"}
    assert _idle_modules(tmp_path, [], desired) == []  # IDLE -> DOWNLOADING: nothing fetched yet
    code = (
        "import sys, json\n"
        "from device.cli import build_parser\n"
        "from device.updater.cli import settings_from\n"
        "from device.updater.machine import Updater\n"
        f"args = build_parser().parse_args(['updater', '--config', {str(tmp_path / 'device.json')!r}])\n"
        "updater = Updater(settings_from(args, {}))\n"
        "updater.recover()\n"
        "assert str(updater.record.state) == 'DOWNLOADING', updater.record.state\n"
        "updater.tick()\n"
        "assert 'not enrolled' in updater.record.reason, updater.record.reason\n"
        f"print(json.dumps(sorted(m for m in {IDLE!r} if m in sys.modules)))\n"
    )
    assert last_json_line(code) == ["tenacity"]
