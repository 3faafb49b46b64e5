"""`tinysphere --log-format json` (or $TINYSPHERE_LOG_FORMAT): one JSON object a log line, uvicorn's included."""

from __future__ import annotations

import json
import logging
import subprocess
import sys

import pytest

from server.cli import _log_formatter, _parser


def test_json_lines_carry_level_and_message() -> None:
    record = logging.LogRecord("uvicorn.access", logging.INFO, __file__, 1, '%s - "%s %s"', ("ip", "GET", "/x"), None)
    line = json.loads(_log_formatter("json").format(record))
    assert line["level"] == "INFO" and line["message"] == 'ip - "GET /x"' and line["name"] == "uvicorn.access"


def test_the_option_and_its_environment_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    assert _parser().parse_args(["--log-format", "json", "migrate"]).log_format == "json"
    assert _parser().parse_args(["migrate"]).log_format == "text"
    monkeypatch.setenv("TINYSPHERE_LOG_FORMAT", "json")
    assert _parser().parse_args(["migrate"]).log_format == "json"
    assert "TINYSPHERE_LOG_FORMAT" in _parser().format_help()


def test_configured_logging_writes_json_lines_on_stderr() -> None:
    code = ("import logging; from server.cli import _configure_logging; _configure_logging('INFO', 'json'); "
            "logging.getLogger('uvicorn.error').info('started %s', 'up')")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    line = json.loads(done.stderr.strip().splitlines()[-1])
    assert line["level"] == "INFO" and line["message"] == "started up"
