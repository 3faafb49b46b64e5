"""The device's state volume (`/data` in the image): every path on it, spelled once.

```
/data/outbox.db                 the SQLite outbox (+ blobs beside it)
/data/models/slot-a, slot-b     the A/B bundle slots; models/current is the symlink between them
/data/state/                    kNN snapshots, detector state, identity, updater journal, desired state
/data/tuf/                      trusted TUF metadata (root.json pinned at provisioning), downloads
/data/provision/provision.json  provisioning dropped on the volume (other places: `device.provision`)
```
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class DataLayout:
    """Paths under one data directory."""

    root: Path

    def __init__(self, root: str | Path) -> None:
        object.__setattr__(self, "root", Path(root))

    @property
    def state(self) -> Path:
        return self.root / "state"

    @property
    def models(self) -> Path:
        return self.root / "models"

    @property
    def current_bundle(self) -> Path:
        return self.models / "current"

    @property
    def tuf(self) -> Path:
        return self.root / "tuf"

    @property
    def tuf_root(self) -> Path:
        return self.tuf / "root.json"

    @property
    def downloads(self) -> Path:
        return self.tuf / "downloads"

    @property
    def outbox(self) -> Path:
        return self.root / "outbox.db"

    @property
    def identity(self) -> Path:
        """Device id + secret after enrollment."""
        return self.state / "sync_identity.json"

    @property
    def updater_journal(self) -> Path:
        """The updater's state machine (read it with `device.updater.update_report`)."""
        return self.state / "updater.json"

    @property
    def updater_reported(self) -> Path:
        """How many updater transitions the appliance has already put into its outbox."""
        return self.state / "updater_reported.json"

    @property
    def desired(self) -> Path:
        """The desired state the server last sent with a heartbeat answer."""
        return self.state / "desired.json"

    @property
    def provisioning_status(self) -> Path:
        return self.state / "provisioning.json"

    @property
    def trusted_time(self) -> Path:
        return self.state / "trusted_time.json"

    @property
    def provision_drop(self) -> Path:
        """Where provisioning may be dropped on the volume itself."""
        return self.root / "provision" / "provision.json"
