"""Settings of the sync task, built from the `sync` and `outbox` sections of the device configuration."""

from __future__ import annotations

from dataclasses import dataclass, field

from device.config import Config
from device.layout import DataLayout
from device.sync.client import ClientSettings
from device.sync.package import ImagePolicy
from device.sync.packer import PackSettings
from device.sync.retry import RetryPolicy


@dataclass(frozen=True)
class SyncSettings:
    server_url: str  # e.g. https://fleet.example.org
    interval_s: float = 30.0  # pause between sync rounds once the backlog is empty or the server failed
    heartbeat_interval_s: float = 30.0  # between heartbeats (they also carry labels and desired state)
    identity_path: str = str(DataLayout("").identity)  # device id + secret after enrollment (absolute, or from cwd)
    enrollment_token: str = ""  # one-time token, used only while there is no identity yet
    device_name: str | None = None  # name sent with the enrollment
    client: ClientSettings = field(default_factory=ClientSettings)
    pack: PackSettings = field(default_factory=PackSettings)

    def __post_init__(self) -> None:
        if not self.server_url.startswith(("http://", "https://")):
            raise ValueError(f"sync.server_url must start with http:// or https://, got {self.server_url!r}")
        if self.interval_s <= 0 or self.heartbeat_interval_s <= 0:
            raise ValueError("sync.interval_s and sync.heartbeat_interval_s must be > 0")


def sync_settings_from(config: Config) -> SyncSettings | None:
    """The sync task's settings from a device configuration; None when `sync.server_url` is empty (offline)."""
    sync = config.sync
    if not sync.server_url:
        return None
    retry = RetryPolicy(attempts=sync.retry_attempts, max_wait_s=sync.retry_max_wait_s)
    client = ClientSettings(connect_timeout_s=min(sync.connect_timeout_s, sync.timeout_s),
                            read_timeout_s=sync.timeout_s, request_timeout_s=max(sync.timeout_s * 3, 60.0),
                            retry=retry)
    images = ImagePolicy(config.outbox.image_max_side, config.outbox.jpeg_quality)
    return SyncSettings(
        server_url=sync.server_url, interval_s=sync.interval_s,
        heartbeat_interval_s=sync.heartbeat_interval_s,
        identity_path=str(DataLayout(config.device.data_dir).identity),
        enrollment_token=sync.enrollment_token, device_name=config.device.name or None,
        client=client, pack=PackSettings(max_bytes=sync.package_max_bytes, images=images),
    )
