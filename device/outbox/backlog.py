"""The sync side of the outbox: read what waits for the server, mark a package in flight, delete on ack.

Rows leave only through `acknowledge` (the server has them) or `reject` (the server can never take
them); the package in flight is persisted first, so a restart rebuilds the very same package.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

from device.outbox.blobs import BlobDir
from device.outbox.records import Record
from device.outbox.store import RecordStore
from device.outbox.usage import Usage

log = logging.getLogger(__name__)


class Backlog:
    """Thread-safe view of the committed records, on a connection of its own."""

    def __init__(self, store: RecordStore, blobs: BlobDir, usage: Usage,
                 on_deliver: Callable[[list[int]], None] | None = None) -> None:
        self._store = store
        self._blobs = blobs
        self._usage = usage
        self._on_deliver = on_deliver
        self._lock = threading.Lock()

    def pending(self, after: int = 0, limit: int = 1000) -> list[Record]:
        """Up to `limit` committed records with seq > `after`, oldest first."""
        with self._lock:
            return self._store.read(after, limit)

    def read_range(self, first: int, last: int) -> list[Record]:
        with self._lock:
            return self._store.read_range(first, last)

    def blob(self, name: str) -> bytes:
        return self._blobs.read(name)

    def in_flight(self) -> dict[str, Any] | None:
        """The package being delivered (as `set_in_flight` stored it), if any."""
        with self._lock:
            value = self._store.meta("in_flight")
        return value if isinstance(value, dict) else None

    def set_in_flight(self, flight: dict[str, Any] | None) -> None:
        """Persist (or clear) the package in flight; it needs `seq_first` and `seq_last`."""
        if flight is not None and not {"seq_first", "seq_last"} <= flight.keys():
            raise ValueError("an in-flight package needs seq_first and seq_last")
        with self._lock, self._store.transaction():
            self._store.set_meta("in_flight", flight)

    def acknowledge(self, first: int, last: int) -> int:
        """The server has seqs first..last: delete them and clear the package in flight; rows deleted."""
        with self._lock, self._store.transaction():
            removed = self._store.delete_range(first, last)
            self._store.set_meta("in_flight", None)
            self._usage.remove(len(removed.seqs), removed.size)  # before COMMIT: the writer sees it at once
        self._blobs.remove(removed.blobs)
        if self._on_deliver and removed.seqs:
            self._on_deliver(removed.seqs)
        return len(removed.seqs)

    def reject(self, first: int, last: int) -> int:
        """The server will never accept seqs first..last (e.g. one record over its size limit): drop them."""
        with self._lock, self._store.transaction():
            removed = self._store.delete_range(first, last)
            self._store.add_counters({"rejected": len(removed.seqs)})
            self._store.set_meta("in_flight", None)
            self._usage.remove(len(removed.seqs), removed.size)
        self._blobs.remove(removed.blobs)
        log.error("dropped %d records the server refuses: seqs %d-%d", len(removed.seqs), first, last)
        return len(removed.seqs)

    def close(self) -> None:
        with self._lock:
            self._store.close()

    def counters(self) -> dict[str, int]:
        """Persisted totals: evicted, dropped, rejected (since the outbox was created)."""
        with self._lock:
            return self._store.counters()
