"""The two model slots `models/slot-a`, `models/slot-b` and the `models/current` symlink between them.

The live slot is never written; a new bundle is unpacked beside the slots, moved into the inactive one,
and goes live only by an atomic flip of `current` (a temp symlink renamed over it).
"""

from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path

from contract.atomic import fsync_dir
from device.errors import SlotError

log = logging.getLogger(__name__)

SLOTS = ("slot-a", "slot-b")
CURRENT = "current"
STAGING = ".staging"


class Slots:
    """A/B slots under one models directory."""

    def __init__(self, models_dir: Path) -> None:
        self.root = models_dir
        self.current = models_dir / CURRENT
        self.staging = models_dir / STAGING

    def path(self, slot: str) -> Path:
        if slot not in SLOTS:
            raise SlotError(f"no slot {slot!r}; slots are {SLOTS}", self.root)
        return self.root / slot

    def live(self) -> str | None:
        """The slot `current` points to, None when there is no link yet."""
        try:
            target = os.readlink(self.current)
        except FileNotFoundError:
            return None
        except OSError as exc:  # EINVAL: a real directory or file where the symlink belongs
            raise SlotError(f"models/current is not a symlink: {exc}", self.current) from exc
        name = Path(target).name
        if name not in SLOTS:
            raise SlotError(f"models/current points to {target!r}, not to a slot", self.current)
        return name

    def inactive(self) -> str:
        live = self.live()
        return SLOTS[1] if live == SLOTS[0] else SLOTS[0]

    def flip(self, slot: str) -> None:
        """Point `current` at `slot` atomically: the link is old or new at every instant, never missing."""
        self.path(slot)
        tmp = self.root / f".{CURRENT}.{os.getpid()}.tmp"
        tmp.unlink(missing_ok=True)
        os.symlink(slot, tmp)
        os.replace(tmp, self.current)
        fsync_dir(self.root)
        log.info("models/current -> %s", slot)

    def clear_staging(self) -> Path:
        """An empty staging directory (a leftover of an interrupted unpack is removed first)."""
        shutil.rmtree(self.staging, ignore_errors=True)
        self.staging.mkdir(parents=True)
        return self.staging

    def install_staging(self, slot: str) -> Path:
        """Move the complete staging directory into `slot`, which must not be live."""
        if slot == self.live():
            raise SlotError(f"refusing to overwrite the live slot {slot}", self.root)
        dest = self.path(slot)
        shutil.rmtree(dest, ignore_errors=True)
        _fsync_all(self.staging)
        os.replace(self.staging, dest)
        fsync_dir(self.root)
        return dest

    def tidy(self) -> None:
        """Remove what an interrupted flip or unpack left behind (temp links, staging)."""
        for leftover in self.root.glob(f".{CURRENT}.*.tmp"):
            leftover.unlink(missing_ok=True)
        shutil.rmtree(self.staging, ignore_errors=True)

    def ensure(self, factory: Path | None) -> str | None:
        """Make sure `current` exists: on first start copy the factory bundle into slot-a and point at it."""
        self.root.mkdir(parents=True, exist_ok=True)
        self.tidy()
        live = self.live()
        if live is not None or factory is None:
            return live
        staging = self.clear_staging()
        for item in factory.iterdir():
            if item.is_file():
                shutil.copy2(item, staging / item.name)
        self.install_staging(SLOTS[0])
        self.flip(SLOTS[0])
        log.info("installed the factory bundle %s into %s", factory, SLOTS[0])
        return SLOTS[0]


def _fsync_all(directory: Path) -> None:
    for item in directory.iterdir():
        if item.is_file():
            fd = os.open(item, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
    fsync_dir(directory)
