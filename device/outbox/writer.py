"""The writer thread: takes batches from the intake, writes blobs, commits rows, enforces the bound.

One transaction per batch (the SD card pays one fsync per batch, not per frame). When the disk is
full the bound is lowered and low-priority records are evicted to make room; a batch that still
does not fit loses its low-priority records first (counted as dropped), and the writer goes on.
The seqs the intake may hand out are reserved on disk a block ahead, inside a batch's transaction
once per block (a clean stop gives back what was not used).
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import replace

from device.outbox.blobs import BlobDir
from device.outbox.intake import Intake
from device.outbox.records import PROTECTED_PRIORITY, Entry
from device.outbox.recovery import Recovery, persist
from device.outbox.store import RecordStore, Removed
from device.outbox.usage import Usage

log = logging.getLogger(__name__)
FULL_DISK_FRACTION = 0.8  # after a full disk, the bound drops to this share of what is stored
Hook = Callable[[list[int]], None]


class Writer:
    """Owns the write connection; its thread runs until the intake is closed and drained."""

    def __init__(self, store: RecordStore, blobs: BlobDir, intake: Intake, usage: Usage, *,
                 batch_max: int, linger_s: float, reserve_ahead: int = 0, recovery: Recovery | None = None,
                 on_commit: Hook | None = None, on_evict: Hook | None = None) -> None:
        self._thread = threading.Thread(target=self.run, name="outbox-writer", daemon=True)
        self.store, self.blobs, self.intake, self.usage = store, blobs, intake, usage
        self.batch_max, self.linger_s = batch_max, linger_s
        # Seqs kept reserved beyond the last one handed out. Between two of the writer's looks the intake can
        # hand out at most a full queue plus one batch, so this much ahead is never used up by a running writer.
        self.reserve_ahead = reserve_ahead
        self.recovery = recovery  # what the start could not record (a full disk): recorded with the next reservation
        self.on_commit, self.on_evict = on_commit, on_evict
        self.failures = 0  # batches (or parts) that could not be stored at all
        self.unwritten = 0  # records with a seq the disk could not hold, not yet counted on disk

    def start(self) -> None:
        self._thread.start()

    def join(self, timeout: float | None = None) -> None:
        self._thread.join(timeout)

    def run(self) -> None:
        while True:
            batch = self.intake.take(self.batch_max, timeout=1.0)
            if batch:
                try:
                    self.commit(batch)
                except Exception:  # never let the writer die: the pipeline would only fill the queue
                    log.exception("outbox batch of %d records lost", len(batch))
                    self._count_lost(list(batch))
                    self.usage.mark_committed(max(e.seq for e in batch))
                finally:
                    self.intake.settled()  # in the usage now (or counted lost): `Outbox.depth` counts it there
            elif self.intake.closed and not len(self.intake):
                self._finish()
                return
            elif self._reservation_due():
                self._reserve_alone()
            if self.linger_s:
                time.sleep(self.linger_s)  # let the next batch gather: fewer fsyncs on the SD card

    def commit(self, batch: Sequence[Entry]) -> None:
        """Store a batch, degrading by policy on a full disk; never raises."""
        entries = self._with_blobs_written(batch)
        try:
            self._store(entries)
        except (sqlite3.Error, OSError) as exc:
            log.warning("outbox write failed (%s); lowering the bound and retrying", exc)
            self._make_room()
            kept = [e for e in entries if e.priority >= PROTECTED_PRIORITY]
            self._retry(entries, kept)
        self.usage.mark_committed(max(e.seq for e in batch))

    def _retry(self, entries: list[Entry], kept: list[Entry]) -> None:
        for attempt in (entries, kept):
            if not attempt:
                continue
            stored = {e.seq for e in attempt}
            try:
                self._store(attempt, [e for e in entries if e.seq not in stored])  # counted in the same commit
            except (sqlite3.Error, OSError) as exc:
                log.error("outbox write failed again (%s)", exc)
                continue
            return
        self._count_lost(entries)

    def _count_lost(self, lost: list[Entry]) -> None:
        """Records with a seq that could not be stored: counted with the next commit (a crash before it
        leaves their seqs to the restart, which counts them as lost in the crash)."""
        if lost:
            self.failures += 1
            self.unwritten += len(lost)
            self.intake.give_back_dropped(Counter(e.kind for e in lost))
            self.blobs.remove(e.blob_name for e in lost if e.blob_name)
            log.error("dropped %d records the disk could not hold", len(lost))

    def _with_blobs_written(self, batch: Sequence[Entry]) -> list[Entry]:
        """Write the batch's blobs (one directory fsync); a record whose blob failed is kept without it."""
        pending = [(e.blob_name, e.blob) for e in batch if e.blob is not None and e.blob_name]
        if not pending:
            return list(batch)
        written = set(self.blobs.write_many(pending))
        if len(written) < len(pending):
            self._make_room()
        return [e if e.blob is None or e.blob_name in written else replace(e, blob=None) for e in batch]

    def _store(self, entries: list[Entry], lost: Sequence[Entry] = ()) -> None:
        """One transaction: the entries, the drop counters (`lost`: entries of the batch left out), the
        reservation when due, and evictions over the bound."""
        dropped, unwritten = self.intake.take_dropped(), self.unwritten
        self.unwritten = 0
        added = sum(e.size for e in entries)
        try:
            with self.store.transaction():
                self.store.insert(entries)
                self.store.add_counters({"dropped": sum(dropped.values()) + len(lost),
                                         "dropped_full_disk": unwritten + len(lost)})
                reserved = self._reserve() if self._reservation_due() else None
                removed = self._evict_over_bound(added)
        except BaseException:
            self.intake.give_back_dropped(dropped)
            self.unwritten += unwritten
            raise
        if reserved is not None:
            self._recorded()
            self.intake.raise_limit(reserved)
        if lost:
            self.failures += 1
            self.blobs.remove(e.blob_name for e in lost if e.blob_name)
            log.error("dropped %d records the disk could not hold", len(lost))
        self.usage.add(len(entries), added)
        self._settle(removed)
        if self.on_commit:
            self.on_commit([e.seq for e in entries])

    def _reservation_due(self) -> bool:
        remaining = self.intake.remaining()
        return self.recovery is not None or (remaining is not None and remaining < self.reserve_ahead)

    def _reserve(self) -> int:
        """Inside a transaction: reserve seqs two blocks past the last one handed out; the new limit."""
        limit = self.intake.next_seq - 1 + 2 * self.reserve_ahead
        if self.recovery is not None:
            persist(self.store, self.recovery, limit)
        else:
            self.store.set_meta("reserved", limit)
        return limit

    def _reserve_alone(self) -> None:
        try:
            with self.store.transaction():
                limit = self._reserve()
        except (sqlite3.Error, OSError) as exc:
            log.error("could not reserve seqs: %s", exc)
            self._make_room()
            return
        self._recorded()
        self.intake.raise_limit(limit)

    def _recorded(self) -> None:
        """After the commit that recorded what the start could not: account for its report."""
        if self.recovery is not None and self.recovery.report is not None:
            self.usage.add(1, self.recovery.report.size)
            self.usage.mark_committed(self.recovery.last_issued)
        self.recovery = None

    def _evict_over_bound(self, added: int = 0) -> Removed:
        """Inside a transaction: delete the lowest-priority, oldest rows over the bound."""
        excess = self.usage.excess(added)
        if not excess:
            return Removed([], [], 0)
        return self._delete(self._candidates(excess))

    def _candidates(self, excess: int) -> Removed:
        flight = self.store.meta("in_flight")
        keep = (flight["seq_first"], flight["seq_last"]) if flight else None
        chosen = self.store.eviction_candidates(excess, keep)
        return Removed([c[0] for c in chosen], [c[1] for c in chosen if c[1]], sum(c[2] for c in chosen))

    def _delete(self, chosen: Removed) -> Removed:
        """Inside a transaction: delete the chosen rows and count them as evicted."""
        self.store.delete_seqs(chosen.seqs)
        self.store.add_counters({"evicted": len(chosen.seqs)})
        return chosen

    def _settle(self, removed: Removed) -> None:
        """After the commit: account for and unlink evicted rows, and tell the observer."""
        if removed.seqs:
            self.usage.remove(len(removed.seqs), removed.size)
            self.blobs.remove(removed.blobs)
            log.info("evicted %d records (%d bytes) over the outbox bound", len(removed.seqs), removed.size)
            if self.on_evict:
                self.on_evict(removed.seqs)

    def _make_room(self) -> None:
        """The disk is full: lower the bound, evict down to it, and shrink the WAL."""
        bound = self.usage.lower_bound(FULL_DISK_FRACTION)
        log.warning("disk full: outbox bound lowered to %d bytes", bound)
        try:
            chosen = self._candidates(self.usage.excess())
            self.blobs.remove(chosen.blobs)  # first: the delete transaction itself needs some free space
            with self.store.transaction():
                removed = self._delete(chosen)
        except (sqlite3.Error, OSError) as exc:
            log.error("could not evict on a full disk: %s", exc)  # rows left without blobs go without them
        else:
            self._settle(removed)
        try:
            self.store.checkpoint()
        except (sqlite3.Error, OSError) as exc:
            log.error("could not checkpoint on a full disk: %s", exc)

    def _finish(self) -> None:
        """After the last batch: persist the drop counters and give back the seqs reserved and not used, so the
        next start finds every seq handed out accounted for."""
        dropped, next_seq = self.intake.take_dropped(), self.intake.next_seq
        try:
            with self.store.transaction():
                self.store.add_counters({"dropped": sum(dropped.values()), "dropped_full_disk": self.unwritten})
                if self.recovery is not None:
                    persist(self.store, self.recovery, next_seq - 1)
                elif self.intake.limit is not None:
                    self.store.keep_next_seq(next_seq)
                    self.store.set_meta("reserved", next_seq - 1)
        except (sqlite3.Error, OSError) as exc:
            log.error("could not persist the drop counters at close: %s", exc)
