"""The sync task: outbox backlog -> deterministic tar.gz packages -> server (idempotent PUT), plus heartbeats."""

from device.sync.client import ClientSettings, SyncClient
from device.sync.identity import Identity
from device.sync.loop import SyncLoop
from device.sync.package import ImagePolicy, Package, package_id
from device.sync.packer import Packer, PackSettings
from device.sync.retry import RetryPolicy
from device.sync.service import SyncService
from device.sync.settings import SyncSettings, sync_settings_from

__all__ = [
    "ClientSettings", "Identity", "ImagePolicy", "PackSettings", "Package", "Packer", "RetryPolicy",
    "SyncClient", "SyncLoop", "SyncService", "SyncSettings", "package_id", "sync_settings_from",
]
