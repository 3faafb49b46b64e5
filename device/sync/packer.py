"""The packer: turns the outbox backlog into the next package to deliver, one seq range at a time.

The range (and its attempt, after a conflict) is persisted as "in flight" before the package is built,
so the writer never evicts from it and a restart rebuilds exactly the same bytes (same id, same
SHA-256) before anything newer.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from contract.package import package_id
from device.outbox.backlog import Backlog
from device.outbox.records import Record
from device.sync.package import ImagePolicy, Package, build, plan

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PackSettings:
    max_bytes: int = 1 << 20  # cap of one package (compressed), so a retry on a slow link is cheap
    max_files: int = 1000  # blobs per package at most
    read_limit: int = 10_000  # records read per planning step (bounds memory on a 512 MB device)
    droppable_bytes: int = 64 * 1024  # a lone record refused as too large is dropped only above this size
    images: ImagePolicy = ImagePolicy()

    def __post_init__(self) -> None:
        if self.max_bytes < 4096 or self.max_files < 1 or self.read_limit < 1:
            raise ValueError("package max_bytes must be >= 4096, max_files and read_limit >= 1")


class Packer:
    """Builds packages of one device from a backlog."""

    def __init__(self, backlog: Backlog, device_id: str, settings: PackSettings | None = None) -> None:
        self.backlog = backlog
        self.device_id = device_id
        self.settings = settings or PackSettings()
        self.max_bytes = self.settings.max_bytes  # lowered when the server answers 413

    def next_package(self) -> Package | None:
        """The package in flight (rebuilt), else a new one from the oldest records; None when empty."""
        flight = self.backlog.in_flight()
        if flight is not None:
            package = self._build_range(flight["seq_first"], flight["seq_last"], _attempt(flight))
            if package is not None:
                if package.package_id != flight.get("package_id"):
                    log.warning("package in flight %s rebuilt as %s", flight.get("package_id"), package.package_id)
                return package
            self.backlog.set_in_flight(None)  # its rows are gone (delivered or rejected)
        records = self.backlog.pending(0, self.settings.read_limit)
        if not records:
            return None
        n = plan(records, self.max_bytes, self.settings.max_files)
        return self._start(records[0].seq, records[n - 1].seq)

    def shrink(self, package: Package) -> Package | None:
        """Replace the package in flight by its first half (after a 413); None if it has one record."""
        records = self.backlog.read_range(package.seq_first, package.seq_last)
        if len(records) <= 1:
            return None
        self.max_bytes = max(4096, min(self.max_bytes, len(package.body) // 2))
        return self._start(records[0].seq, records[len(records) // 2 - 1].seq)

    def renew(self, package: Package) -> Package | None:
        """The package in flight again under a fresh id of this device, after the server was found holding
        other content under its id; None if its records are gone."""
        return self._start(package.seq_first, package.seq_last, _attempt(self.backlog.in_flight()) + 1)

    def _start(self, first: int, last: int, attempt: int = 0) -> Package | None:
        """Mark first..last in flight, then build it from what the range holds now; shrink while over the cap."""
        while True:
            flight: dict[str, object] = {"package_id": package_id(self.device_id, first, last, attempt),
                                         "seq_first": first, "seq_last": last}
            if attempt:
                flight["attempt"] = attempt
            self.backlog.set_in_flight(flight)
            records = self.backlog.read_range(first, last)
            if not records:
                self.backlog.set_in_flight(None)
                return None
            package = self._build(records, attempt)
            if len(package.body) <= self.max_bytes or len(records) == 1:
                return package
            keep = max(1, int(len(records) * self.max_bytes / len(package.body) * 0.9))
            last = records[keep - 1].seq
            log.debug("package of %d records is %d bytes; retrying with %d", len(records), len(package.body), keep)

    def _build_range(self, first: int, last: int, attempt: int) -> Package | None:
        records = self.backlog.read_range(first, last)
        return self._build(records, attempt) if records else None

    def _build(self, records: list[Record], attempt: int) -> Package:
        return build(self.device_id, records, self._blob, self.settings.images, attempt)

    def _blob(self, name: str) -> bytes | None:
        try:
            return self.backlog.blob(name)
        except FileNotFoundError:  # evicted on a full disk before its row could be deleted
            log.warning("blob %s is gone; its record goes without it", name)
            return None


def _attempt(flight: dict[str, Any] | None) -> int:
    """The attempt a persisted in-flight entry names (0 when it predates conflicts, or is unreadable)."""
    value = (flight or {}).get("attempt", 0)
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else 0
