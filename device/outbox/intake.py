"""The bounded in-memory queue between the pipeline and the writer thread.

`put` never blocks: it stamps the record with the next seq and queues it, or drops it (counted)
when the queue is full. Records of `PROTECTED_PRIORITY` and above (adaptations, drift events) may
use a headroom above the bound, so a burst of predictions cannot push them out. A seq is handed out
only within the block reserved on disk (`limit`) and stored in the issued mark first, so a crash
can lose queued records but never hide the loss (see `recovery`).
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections import Counter, deque
from datetime import UTC, datetime
from typing import Any

from device.outbox.issued import IssuedMark
from device.outbox.records import PRIORITY, PROTECTED_PRIORITY, Entry

log = logging.getLogger(__name__)
# A queued record: seq, kind, wall time, priority, payload (serialised by the writer thread), blob, blob_ext.
Pending = tuple[int, str, float, int, "dict[str, Any] | str", "bytes | None", str]


def to_entry(item: Pending) -> Entry:
    """Serialise one queued record on the writer thread, off the frame path.

    A payload that is not JSON is kept as its `repr` (and logged), so its seq is never a gap.
    """
    seq, kind, wall, priority, data, blob, blob_ext = item
    try:
        text = data if isinstance(data, str) else json.dumps(data, separators=(",", ":"))
    except (TypeError, ValueError) as exc:
        log.error("outbox record %d (%s) is not JSON-serialisable, kept as text: %s", seq, kind, exc)
        text = json.dumps({"unserialisable": repr(data)[:2000]})
    return Entry(seq, kind, datetime.fromtimestamp(wall, UTC).isoformat(), priority, text, blob, blob_ext)


class Intake:
    """Assigns seqs and holds entries until the writer takes them."""

    def __init__(self, next_seq: int, capacity: int, headroom: int, limit: int | None = None,
                 mark: IssuedMark | None = None) -> None:
        if capacity < 1 or headroom < 0:
            raise ValueError(f"queue capacity must be >= 1 and headroom >= 0, got {capacity}, {headroom}")
        self.capacity = capacity
        self.headroom = headroom
        self.next_seq = next_seq
        self.limit = limit  # the highest seq reserved on disk (None: no reservation, for tests of the queue)
        self._mark = mark
        self.dropped: Counter[str] = Counter()  # by kind, since the writer last persisted them
        self._items: deque[Pending] = deque()
        self._in_flight = 0  # taken by the writer, not yet in the store's usage
        self._cond = threading.Condition()
        self._closed = False

    def put(self, kind: str, data: dict[str, Any] | str, blob: bytes | None, blob_ext: str) -> int | None:
        """Queue one record; its seq, or None when it was dropped because the queue is full."""
        priority = PRIORITY[kind]
        wall = time.time()
        with self._cond:
            n = len(self._items)
            full = n >= self.capacity and (priority < PROTECTED_PRIORITY or n >= self.capacity + self.headroom)
            # The writer reserves far enough ahead that only a stalled writer lets the queue reach the limit.
            unreserved = self.limit is not None and self.next_seq > self.limit
            if self._closed or full or unreserved:
                self.dropped[kind] += 1
                return None
            seq = self.next_seq
            self.next_seq += 1
            if self._mark is not None:
                self._mark.set(seq)
            self._items.append((seq, kind, wall, priority, data, blob, blob_ext))
            self._cond.notify()
        return seq

    def take(self, limit: int, timeout: float | None) -> list[Entry]:
        """Up to `limit` queued entries, waiting up to `timeout` for the first one; serialised here. They count as
        pending until the writer calls `settled()` (it has added them to the store's usage, or counted them lost)."""
        with self._cond:
            self._cond.wait_for(lambda: self._items or self._closed, timeout)
            items = [self._items.popleft() for _ in range(min(limit, len(self._items)))]
            self._in_flight = len(items)
        return [to_entry(item) for item in items]

    def settled(self) -> None:
        """The batch `take` gave is stored (in the usage) or counted as lost: no longer pending here."""
        with self._cond:
            self._in_flight = 0

    def pending(self) -> int:
        """Entries queued or taken by the writer and not settled yet."""
        with self._cond:
            return len(self._items) + self._in_flight

    def take_dropped(self) -> Counter[str]:
        """The drop counts since the last call (the writer persists them)."""
        with self._cond:
            dropped, self.dropped = self.dropped, Counter()
        return dropped

    def give_back_dropped(self, dropped: Counter[str]) -> None:
        with self._cond:
            self.dropped.update(dropped)

    def raise_limit(self, limit: int) -> None:
        """Seqs up to `limit` are reserved on disk now (the writer committed the reservation)."""
        with self._cond:
            self.limit = max(self.limit or 0, limit)

    def remaining(self) -> int | None:
        """Seqs still reserved and not handed out (None: no reservation)."""
        return None if self.limit is None else self.limit - self.next_seq + 1

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
