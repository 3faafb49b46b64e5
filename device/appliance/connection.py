"""The appliance's link to its server: sync at once with a configured server, else provision first, then sync."""

from __future__ import annotations

import dataclasses
import logging
import threading
from collections.abc import Mapping
from typing import Any

from device.config import Config
from device.outbox import Outbox
from device.provision import Provisioner, ProvisioningStatus, ProvisionSettings
from device.sync.loop import DesiredFn, LabelsFn, StatusFn
from device.sync.service import SyncService
from device.sync.settings import sync_settings_from

log = logging.getLogger(__name__)


class Connection:
    """Starts the `SyncService` (once) with the appliance's callbacks; `health()` says how far it got."""

    def __init__(self, config: Config, outbox: Outbox, status: StatusFn, on_labels: LabelsFn,
                 on_desired: DesiredFn, environment: Mapping[str, str] | None = None) -> None:
        self.config = config
        self.environment = dict(environment or {})  # provisioning from the environment (balena): the CLI's
        self.outbox = outbox
        self.status, self.on_labels, self.on_desired = status, on_labels, on_desired
        self.sync: SyncService | None = None
        self.provisioner: Provisioner | None = None
        self._lock = threading.Lock()

    def connect(self) -> None:
        """Sync with the configured server, or provision first (file on the card or balena variables)."""
        if self.config.sync.server_url:
            self._start_sync(self.config.sync.server_url)
            return
        settings = ProvisionSettings.for_data_dir(self.config.device.data_dir)
        self.provisioner = Provisioner(settings, environment=self.environment).start(self._on_enrolled)

    def _on_enrolled(self, status: ProvisioningStatus) -> None:
        if status.server_url:
            self._start_sync(status.server_url)

    def _start_sync(self, server_url: str) -> None:
        sync = dataclasses.replace(self.config.sync, server_url=server_url)  # the config itself never changes
        settings = sync_settings_from(dataclasses.replace(self.config, sync=sync))
        with self._lock:
            if settings is not None and self.sync is None:
                self.sync = SyncService(self.outbox, settings, status=self.status, on_labels=self.on_labels,
                                        on_desired=self.on_desired).start()
                log.info("syncing with %s", server_url)

    def health(self) -> dict[str, Any]:
        """For the health snapshot: whether sync runs (`sync`), its counters, the provisioning state."""
        sync = self.sync.counters() if self.sync else {}  # sync_conflicts: integrity incidents since start
        return {"sync": self.sync is not None, **sync, **(self.provisioner.health() if self.provisioner else {})}

    def close(self) -> None:
        """Stop provisioning; send a last heartbeat and stop syncing."""
        if self.provisioner is not None:
            self.provisioner.close()
        if self.sync is not None:
            self.sync.heartbeat(5)
            self.sync.close()
