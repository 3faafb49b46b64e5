"""The bounded in-memory queue between the pipeline and the writer thread.

`put` never blocks: it stamps the record with the next seq and queues it, or drops it (counted)
when the queue is full. Records of `PROTECTED_PRIORITY` and above (adaptations, drift events) may
use a headroom above the bound, so a burst of predictions cannot push them out.
"""

from __future__ import annotations

import threading
from collections import Counter, deque
from datetime import UTC, datetime

from device.outbox.records import PRIORITY, PROTECTED_PRIORITY, Entry


class Intake:
    """Assigns seqs and holds entries until the writer takes them."""

    def __init__(self, next_seq: int, capacity: int, headroom: int) -> None:
        if capacity < 1 or headroom < 0:
            raise ValueError(f"queue capacity must be >= 1 and headroom >= 0, got {capacity}, {headroom}")
        self.capacity = capacity
        self.headroom = headroom
        self.next_seq = next_seq
        self.dropped: Counter[str] = Counter()  # by kind, since the writer last persisted them
        self._items: deque[Entry] = deque()
        self._cond = threading.Condition()
        self._closed = False

    def put(self, kind: str, data: str, blob: bytes | None, blob_ext: str) -> int | None:
        """Queue one record; its seq, or None when it was dropped because the queue is full."""
        priority = PRIORITY[kind]
        ts = datetime.now(UTC).isoformat()
        with self._cond:
            n = len(self._items)
            full = n >= self.capacity and (priority < PROTECTED_PRIORITY or n >= self.capacity + self.headroom)
            if self._closed or full:
                self.dropped[kind] += 1
                return None
            seq = self.next_seq
            self.next_seq += 1
            self._items.append(Entry(seq, kind, ts, priority, data, blob, blob_ext))
            self._cond.notify()
        return seq

    def take(self, limit: int, timeout: float | None) -> list[Entry]:
        """Up to `limit` queued entries, waiting up to `timeout` for the first one."""
        with self._cond:
            self._cond.wait_for(lambda: self._items or self._closed, timeout)
            return [self._items.popleft() for _ in range(min(limit, len(self._items)))]

    def take_dropped(self) -> Counter[str]:
        """The drop counts since the last call (the writer persists them)."""
        with self._cond:
            dropped, self.dropped = self.dropped, Counter()
        return dropped

    def give_back_dropped(self, dropped: Counter[str]) -> None:
        with self._cond:
            self.dropped.update(dropped)

    def close(self) -> None:
        """Refuse new records; the writer drains what is queued and stops."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    @property
    def closed(self) -> bool:
        return self._closed

    def __len__(self) -> int:
        return len(self._items)
