"""The watchdog updater: TUF-verified download, A/B slots with an atomic flip, health-gated commit or rollback.

`Updater(UpdaterSettings(...)).run(stop)` is the service; `update_report(data_dir)` is what the inference
service's heartbeat carries about it; `tinylcm updater` (see `cli.py`) starts it. Names are imported on first
use: the inference service reads `update_report` without loading the TUF client and its cryptography.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from device.updater.clock import TrustedClock
    from device.updater.container import DockerRestarter
    from device.updater.machine import Updater
    from device.updater.record import State, UpdateRecord, update_report
    from device.updater.settings import ArchiveLimits, ProbationGates, UpdaterSettings
    from device.updater.watchdog import BalenaRestarter, ProcessRestarter, Restarter, Watchdog, select_restarter

_WHERE = {
    "ArchiveLimits": "settings", "BalenaRestarter": "watchdog", "DockerRestarter": "container",
    "ProbationGates": "settings", "ProcessRestarter": "watchdog", "Restarter": "watchdog", "State": "record",
    "TrustedClock": "clock", "UpdateRecord": "record", "Updater": "machine", "UpdaterSettings": "settings",
    "Watchdog": "watchdog", "select_restarter": "watchdog", "update_report": "record",
}
__all__ = [
    "ArchiveLimits", "BalenaRestarter", "DockerRestarter", "ProbationGates", "ProcessRestarter", "Restarter",
    "State", "TrustedClock", "UpdateRecord", "Updater", "UpdaterSettings", "Watchdog", "select_restarter",
    "update_report",
]


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f"module 'device.updater' has no attribute {name!r}")
    return getattr(import_module(f"device.updater.{_WHERE[name]}"), name)
