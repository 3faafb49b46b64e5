"""What both device CLIs (`tinylcm`, `tinylcm updater`) share: the version, the environment they read, and
expected errors said in one line with exit status 2.

Both services run for months on a 512 MB board: what only `--version` (importlib.metadata, with email and
zipfile) or `--log-format json` (python-json-logger) needs is imported when asked for, not by every start.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import traceback
from collections.abc import Sequence
from typing import Any

from device.errors import TinyLCMError

DISTRIBUTION = "tinymlops"
ENVIRONMENT = """environment (run):
  TINYMLOPS_SERVER_URL        server to enroll with when no provisioning file is on the data volume
  TINYMLOPS_ENROLLMENT_TOKEN  its one-time enrollment token (tse_...)
  TINYMLOPS_DEVICE_NAME       the device's name on the server
  TINYMLOPS_LOG_FORMAT        text (default) or json: one JSON object per log line (--log-format)
The data directory is the config's device.data_dir (updater: --data-dir, else the config's, else /data).
environment (updater): BALENA_DEVICE_TYPE, BALENA_SUPERVISOR_ADDRESS, BALENA_SUPERVISOR_API_KEY, BALENA_APP_ID.

"""


LOG_FORMAT_ENV = "TINYMLOPS_LOG_FORMAT"


def add_log_format(parser: argparse.ArgumentParser) -> None:
    """`--log-format text|json`, by default $TINYMLOPS_LOG_FORMAT, else text."""
    parser.add_argument("--log-format", choices=["text", "json"], default=os.environ.get(LOG_FORMAT_ENV) or "text",
                        help=f"log lines as text or as JSON objects (default: ${LOG_FORMAT_ENV}, else text)")


def log_formatter(log_format: str) -> logging.Formatter:
    """Text lines, or for "json" one JSON object a line with `time`, `level`, `name` and `message`."""
    if log_format == "json":
        from pythonjsonlogger.json import JsonFormatter

        return JsonFormatter("%(asctime)s %(levelname)s %(name)s %(message)s",
                             rename_fields={"levelname": "level", "asctime": "time"})
    return logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s")


def configure_logging(level: int | str, log_format: str) -> None:
    """The root logger at `level`, writing to stderr in `log_format` (text or json)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(log_formatter(log_format))
    logging.basicConfig(level=level, handlers=[handler])


def package_version() -> str:
    """The installed distribution's version."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(DISTRIBUTION)
    except PackageNotFoundError:  # run from a source tree that was never installed
        return "unknown (not installed)"


class VersionAction(argparse.Action):
    """`--version`: print "PROG VERSION" and exit, the version looked up only then (argparse's own "version"
    action takes the string when the parser is built, i.e. at every start)."""

    def __init__(self, option_strings: Sequence[str], dest: str = argparse.SUPPRESS,
                 default: Any = argparse.SUPPRESS, help: str = "show the version and exit") -> None:  # noqa: A002
        super().__init__(option_strings, dest=dest, default=default, nargs=0, help=help)

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, values: Any,
                 option_string: str | None = None) -> None:
        sys.stdout.write(f"{parser.prog} {package_version()}\n")  # on stdout, as argparse's own action
        parser.exit()


def fail(prog: str, exc: BaseException, debug: bool) -> int | None:
    """Exit status 2 and one line on stderr for an expected error (the traceback too with --debug); None otherwise."""
    if isinstance(exc, TinyLCMError):
        message = str(exc)
    elif isinstance(exc, OSError) and exc.strerror:
        message = f"{exc.filename}: {exc.strerror}" if exc.filename else exc.strerror
    else:
        return None
    if debug:
        traceback.print_exc()
    sys.stderr.write(f"{prog}: error: {' '.join(message.split())}\n")
    return 2
