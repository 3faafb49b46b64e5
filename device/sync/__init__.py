"""The sync task: outbox backlog -> deterministic tar.gz packages -> server (idempotent PUT), plus heartbeats.

Names are imported on first use, so that `device.sync.identity` (which the updater needs) does not pull in
aiohttp and the outbox: the updater runs beside the inference service in a few tens of MB.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from device.sync.client import ClientSettings, SyncClient
    from device.sync.identity import Identity
    from device.sync.loop import SyncLoop
    from device.sync.package import ImagePolicy, Package
    from device.sync.packer import Packer, PackSettings
    from device.sync.retry import RetryPolicy
    from device.sync.service import SyncService
    from device.sync.settings import SyncSettings, sync_settings_from

_WHERE = {
    "ClientSettings": "client", "SyncClient": "client", "Identity": "identity", "SyncLoop": "loop",
    "ImagePolicy": "package", "Package": "package", "Packer": "packer",
    "PackSettings": "packer", "RetryPolicy": "retry", "SyncService": "service", "SyncSettings": "settings",
    "sync_settings_from": "settings",
}
__all__ = [
    "ClientSettings", "Identity", "ImagePolicy", "PackSettings", "Package", "Packer", "RetryPolicy",
    "SyncClient", "SyncLoop", "SyncService", "SyncSettings", "sync_settings_from",
]


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f"module 'device.sync' has no attribute {name!r}")
    return getattr(import_module(f"device.sync.{_WHERE[name]}"), name)
