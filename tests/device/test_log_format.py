"""`--log-format json` (or $TINYMLOPS_LOG_FORMAT) on `tinylcm` and `tinylcm updater`: one JSON object a log line."""

from __future__ import annotations

import json
import logging
import subprocess
import sys

import pytest

from device.cli import build_parser
from device.commandline import log_formatter
from device.updater.cli import main as updater_main


def test_json_lines_carry_level_and_message() -> None:
    record = logging.LogRecord("tinylcm", logging.WARNING, __file__, 1, "frames %d", (3,), None)
    line = json.loads(log_formatter("json").format(record))
    assert line["level"] == "WARNING" and line["message"] == "frames 3" and line["name"] == "tinylcm"
    assert log_formatter("text").format(record).endswith("WARNING tinylcm: frames 3")


def test_the_option_and_its_environment_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    assert build_parser().parse_args(["--log-format", "json", "run", "--config", "c.json"]).log_format == "json"
    assert build_parser().parse_args(["run", "--config", "c.json"]).log_format == "text"
    monkeypatch.setenv("TINYMLOPS_LOG_FORMAT", "json")
    assert build_parser().parse_args(["updater"]).log_format == "json"
    assert "TINYMLOPS_LOG_FORMAT" in build_parser().format_help()


def test_the_updater_takes_the_option(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        updater_main(["--help"])
    assert "--log-format {text,json}" in capsys.readouterr().out


def test_configured_logging_writes_json_lines_on_stderr() -> None:
    code = ("import logging; from device.commandline import configure_logging; "
            "configure_logging(logging.INFO, 'json'); logging.getLogger('tinylcm.updater').info('hello %s', 'there')")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    line = json.loads(done.stderr.strip().splitlines()[-1])
    assert line["level"] == "INFO" and line["message"] == "hello there" and line["name"] == "tinylcm.updater"
