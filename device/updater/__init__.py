"""The watchdog updater: TUF-verified download, A/B slots with an atomic flip, health-gated commit or rollback.

`Updater(UpdaterSettings(...)).run(stop)` is the service; `update_report(data_dir)` is what the inference
service's heartbeat carries about it; `tinylcm updater` (see `cli.py`) starts it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from device.errors import StateError
from device.layout import DataLayout
from device.updater.clock import TrustedClock
from device.updater.container import DockerRestarter
from device.updater.machine import Updater
from device.updater.record import Journal, State, UpdateRecord, report
from device.updater.settings import ArchiveLimits, ProbationGates, UpdaterSettings
from device.updater.watchdog import BalenaRestarter, ProcessRestarter, Restarter, Watchdog, select_restarter

__all__ = [
    "ArchiveLimits", "BalenaRestarter", "DockerRestarter", "ProbationGates", "ProcessRestarter", "Restarter",
    "State", "TrustedClock", "UpdateRecord", "Updater", "UpdaterSettings", "Watchdog", "select_restarter",
    "update_report",
]


def update_report(data_dir: str | Path, events: int = 20) -> dict[str, Any]:
    """The updater's state for the heartbeat, read from `state/updater.json` ({"state": "unknown"} if unreadable)."""
    try:
        record = Journal(DataLayout(data_dir).updater_journal).load()
    except StateError:
        return {"state": "unknown"}
    return report(record, events)
