"""The server's desired bundle, handed to the updater (a separate process) through `state/desired.json`."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from contract.atomic import write_json_atomic


class DesiredState:
    """Writes each heartbeat answer's desired state to `path`, when it changes (and once per start).

    Not on every heartbeat: each write is an fsync on the SD card. `received_at` is when this desired
    state first arrived.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._last: dict[str, Any] | None = None  # what `path` holds, as last written by this process

    def __call__(self, desired: dict[str, Any]) -> None:
        if desired == self._last:
            return
        write_json_atomic(self.path, {**desired, "received_at": datetime.now(UTC).isoformat(timespec="seconds")})
        self._last = dict(desired)
