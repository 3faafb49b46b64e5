"""`Outbox`: what the pipeline calls per frame. `append` only queues (microseconds); a writer thread
commits in batches; `backlog` is what the sync task reads and acknowledges.
"""

from __future__ import annotations

import json
import logging
import re
import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from device.config import OutboxConfig
from device.outbox.backlog import Backlog
from device.outbox.blobs import BlobDir
from device.outbox.intake import Intake
from device.outbox.issued import IssuedMark, boot_id, read_mark
from device.outbox.records import KINDS
from device.outbox.recovery import inspect, persist
from device.outbox.store import WAL_BYTES, RecordStore
from device.outbox.usage import Usage
from device.outbox.writer import Writer

log = logging.getLogger(__name__)
_BLOB_EXT = re.compile(r"^[A-Za-z0-9]{1,8}$")


@dataclass
class OutboxSettings:
    """How the outbox buffers and bounds; built from `OutboxConfig` by the service."""

    max_mb: float = 256.0  # disk bound, blobs included; over it the lowest-priority, oldest records go
    queue_size: int = 1024  # records waiting for the writer; beyond it low-priority records are dropped
    queue_headroom: int = 256  # extra places for adaptations and drift events when the queue is full
    batch_max: int = 512  # records per transaction at most
    linger_s: float = 0.05  # pause after each commit so the next batch gathers (fewer fsyncs)
    synchronous: str = "FULL"  # SQLite synchronous pragma: FULL makes a committed batch survive power loss
    wal_bytes: int = WAL_BYTES  # WAL checkpoint threshold; the WAL is truncated back to this size

    def __post_init__(self) -> None:
        if self.max_mb <= 0 or self.queue_size < 1 or self.batch_max < 1 or self.linger_s < 0 or self.wal_bytes < 1:
            raise ValueError("outbox: max_mb > 0, queue_size, batch_max, wal_bytes >= 1 and linger_s >= 0 required")
        if self.synchronous not in ("NORMAL", "FULL", "EXTRA"):
            raise ValueError(f"outbox.synchronous must be NORMAL, FULL or EXTRA, got {self.synchronous!r}")


def outbox_settings_from(config: OutboxConfig) -> OutboxSettings:
    """The outbox's settings from the `outbox` section of the device configuration."""
    return OutboxSettings(max_mb=config.max_mb, queue_size=config.queue_size, linger_s=config.commit_interval_s)


class OutboxObserver(Protocol):
    """Optional hooks (tests, ledgers): called from the writer or sync thread after each commit."""

    def committed(self, seqs: list[int]) -> None: ...
    def evicted(self, seqs: list[int]) -> None: ...
    def delivered(self, seqs: list[int]) -> None: ...


class Outbox:
    """The local buffer: SQLite (WAL) records with a per-device seq, blobs beside the database."""

    def __init__(self, path: str | Path, settings: OutboxSettings | None = None,
                 observer: OutboxObserver | None = None) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.settings = settings or OutboxSettings()
        self.blobs = BlobDir(self.path.with_name(self.path.stem + "-blobs"))
        write_store = RecordStore(self.path, self.settings.synchronous, self.settings.wal_bytes)
        self.blobs.remove_orphans(write_store.blob_names())
        # What a crash of the last run lost is counted (and reported) before any seq is handed out again.
        mark_path, boot = self.path.with_name(self.path.stem + "-issued"), boot_id()
        recovery = inspect(write_store, read_mark(mark_path, boot))
        ahead = self.settings.queue_size + self.settings.queue_headroom + self.settings.batch_max
        limit, pending = recovery.last_issued + 2 * ahead, None
        try:
            with write_store.transaction():
                persist(write_store, recovery, limit)
        except (sqlite3.Error, OSError) as exc:  # a full disk: the writer records it once there is room
            log.error("outbox %s: cannot reserve seqs (%s); records are dropped until it can", self.path, exc)
            limit, pending = recovery.last_issued, recovery
        self._mark = IssuedMark(mark_path, boot, recovery.last_issued)
        # Records handed out and never committed, over every restart after a crash.
        self.lost_in_crash = write_store.counters()["lost_in_crash"] + (recovery.lost if pending else 0)
        rows, size, top = write_store.usage()
        self.usage = Usage(rows, size, int(self.settings.max_mb * 2**20), top - 1)
        self._intake = Intake(recovery.last_issued + 1, self.settings.queue_size, self.settings.queue_headroom,
                              limit=limit, mark=self._mark)
        self._writer = Writer(
            write_store, self.blobs, self._intake, self.usage, batch_max=self.settings.batch_max,
            linger_s=self.settings.linger_s, reserve_ahead=ahead, recovery=pending,
            on_commit=observer.committed if observer else None, on_evict=observer.evicted if observer else None,
        )
        self.backlog = Backlog(RecordStore(self.path, self.settings.synchronous, self.settings.wal_bytes),
                               self.blobs, self.usage,
                               on_deliver=observer.delivered if observer else None)
        self._writer.start()
        log.info("outbox %s: %d records (%d bytes), next seq %d", self.path, rows, size, recovery.last_issued + 1)

    def append(self, kind: str, data: dict[str, Any], blob: bytes | None = None, blob_ext: str = "jpg") -> int | None:
        """Queue one record (and its blob) without touching the disk; its seq, or None if dropped (queue full)."""
        if kind not in KINDS:
            raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
        if blob is not None and not _BLOB_EXT.match(blob_ext):
            raise ValueError(f"blob_ext must be 1-8 letters or digits, got {blob_ext!r}")
        return self._intake.put(kind, data, blob, blob_ext)  # the writer thread serialises it

    def depth(self) -> int:
        """Records waiting for the server (queued, being committed, or stored); never too low, for a moment one
        batch too high (stored and not yet settled by the writer)."""
        return self.usage.rows + self._intake.pending()

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until every record appended so far is committed (or dropped); False on timeout."""
        return self.usage.wait_committed(self._intake.next_seq - 1, timeout)

    @property
    def committed_seq(self) -> int:
        """Every seq up to this one that `append` returned is durable (or was delivered, evicted, or dropped on a
        full disk since; all counted)."""
        return self.usage.committed_seq

    def stats(self) -> dict[str, int]:
        """Depth, bytes, bound and the persisted counters (evicted, dropped, rejected, lost in crash...)."""
        counters = self.backlog.counters()
        counters["dropped"] += sum(self._intake.dropped.values())
        counters["dropped_full_disk"] += self._writer.unwritten
        return {"depth": self.depth(), "bytes": self.usage.size, "bound_bytes": self.usage.bound,
                "queued": len(self._intake), **counters}

    def records(self, kind: str | None = None) -> list[dict[str, Any]]:
        """Every stored record (of one kind), oldest first, after a flush; for inspection and tests."""
        self.flush()
        out, after = [], 0
        while batch := self.backlog.pending(after, 1000):
            out += [{"seq": r.seq, "kind": r.kind, "ts": r.ts, "priority": r.priority,
                     "data": json.loads(r.data), "blob": r.blob} for r in batch if kind in (None, r.kind)]
            after = batch[-1].seq
        return out

    def close(self) -> None:
        """Commit what is queued, then close both connections."""
        self._intake.close()
        self._writer.join()
        self._writer.store.close()
        self.backlog.close()
        self._mark.close()
