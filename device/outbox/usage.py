"""What the outbox occupies (rows, accounted bytes), its disk bound, and the durable seq watermark."""

from __future__ import annotations

import threading

MIN_BOUND = 64 * 1024  # bytes; a full disk never lowers the bound below this


class Usage:
    """Shared by the writer thread and the sync side; every field changes under one lock."""

    def __init__(self, rows: int, size: int, bound: int, committed_seq: int) -> None:
        self.rows = rows
        self.size = size
        self.bound = bound  # bytes; lowered when the disk turns out to be smaller than configured
        self.committed_seq = committed_seq  # every seq <= this that was not dropped is durable
        self._cond = threading.Condition()

    def add(self, rows: int, size: int) -> None:
        with self._cond:
            self.rows += rows
            self.size += size

    def remove(self, rows: int, size: int) -> None:
        with self._cond:
            self.rows = max(0, self.rows - rows)
            self.size = max(0, self.size - size)

    def excess(self, added: int = 0) -> int:
        """Bytes over the bound once `added` more are stored (0 when within it)."""
        with self._cond:
            return max(0, self.size + added - self.bound)

    def lower_bound(self, fraction: float) -> int:
        """After a full disk: bound = `fraction` of what is stored now (not below `MIN_BOUND`)."""
        with self._cond:
            self.bound = max(MIN_BOUND, min(self.bound, int(self.size * fraction)))
            return self.bound

    def mark_committed(self, seq: int) -> None:
        with self._cond:
            self.committed_seq = max(self.committed_seq, seq)
            self._cond.notify_all()

    def wait_committed(self, seq: int, timeout: float | None) -> bool:
        """Block until `seq` is durable (or dropped); False on timeout."""
        with self._cond:
            return self._cond.wait_for(lambda: self.committed_seq >= seq, timeout)
