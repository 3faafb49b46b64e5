"""The SQLite side of the outbox (WAL, plain `sqlite3`): the `records` table and a small `meta` table.

`meta` keeps what must survive a restart: the next `seq` (so a seq is never reused, even after its
row was delivered or evicted; written before rows are deleted, and otherwise derived from the rows),
the seqs `reserved` ahead of it (see `recovery`), the counters, and the package in flight.

A row's `data` is stored compressed (`encoding`) and read back as the JSON text that was appended; a new
database has 512-byte pages. Both only make each commit's WAL frames fewer: every commit is still fsynced
(`synchronous=FULL` by default) before a record counts as committed.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from device.outbox.encoding import decode, encode
from device.outbox.records import Entry, Record

# `dropped`: records the queue or the disk could not take (`dropped_full_disk`: those of them that had a seq);
# `lost_in_crash` and `seqs_unaccounted`: what restarts found handed out and never committed (`recovery`).
COUNTERS = ("evicted", "dropped", "rejected", "dropped_full_disk", "lost_in_crash", "seqs_unaccounted")
_COLUMNS = "seq, kind, ts, priority, data, blob, size"
_BUSY_TIMEOUT_S = 30.0
PAGE_SIZE = 512  # bytes, of a new database; SQLite's default is 4096
WAL_BYTES = 2**20  # the WAL is checkpointed once it holds this many bytes of pages, and truncated back to it
# The schema, as sqlite-utils wrote it for the first outboxes (the library is no longer imported: 7 MB of RSS).
_SCHEMA = (
    'CREATE TABLE IF NOT EXISTS "records" (\n   "seq" INTEGER PRIMARY KEY,\n   "kind" TEXT NOT NULL,\n'
    '   "ts" TEXT NOT NULL,\n   "priority" INTEGER NOT NULL,\n   "data" TEXT NOT NULL,\n   "blob" TEXT,\n'
    '   "size" INTEGER NOT NULL DEFAULT 0\n)',
    'CREATE INDEX IF NOT EXISTS "records_eviction"\n    ON "records" ("priority", "seq")',
    'CREATE TABLE IF NOT EXISTS "meta" (\n   "key" TEXT PRIMARY KEY,\n   "value" TEXT\n)',
)


@dataclass(frozen=True)
class Removed:
    """Rows a transaction deleted: their seqs, blob names and accounted bytes."""

    seqs: list[int]
    blobs: list[str]
    size: int


class RecordStore:
    """One connection to the outbox database; the writer thread and the sync side each own one."""

    def __init__(self, path: Path, synchronous: str = "FULL", wal_bytes: int = WAL_BYTES) -> None:
        conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=_BUSY_TIMEOUT_S)
        self.conn = conn
        # Small pages: each commit appends every page it touched to the WAL, and an outbox commit touches a
        # few (a records leaf or two, their parent, the eviction index's leaf, page 1 when the file grows).
        # A new database only; an older one keeps its size, and works the same.
        conn.execute(f"PRAGMA page_size={PAGE_SIZE}")
        conn.execute("PRAGMA journal_mode=wal")
        conn.execute(f"PRAGMA synchronous={synchronous}")
        # A small WAL, truncated after each checkpoint: on a nearly full card it must not eat the space.
        page_size = int(conn.execute("PRAGMA page_size").fetchone()[0])
        conn.execute(f"PRAGMA wal_autocheckpoint={max(1, int(wal_bytes) // page_size)}")
        conn.execute(f"PRAGMA journal_size_limit={int(wal_bytes)}")
        self._create()

    def _create(self) -> None:
        columns = {row[1] for row in self.conn.execute('PRAGMA table_info("records")')}
        if columns and "size" not in columns:  # databases of the first, unbounded outbox
            self.conn.execute('ALTER TABLE "records" ADD COLUMN "size" INTEGER NOT NULL DEFAULT 0')
        for statement in _SCHEMA:
            self.conn.execute(statement)

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """BEGIN IMMEDIATE ... COMMIT: takes the write lock up front, so two writers never deadlock."""
        self.conn.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            if self.conn.in_transaction:
                self.conn.execute("ROLLBACK")
            raise
        self.conn.execute("COMMIT")

    def meta(self, key: str, default: Any = None) -> Any:
        row = self.conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return json.loads(row[0]) if row else default

    def set_meta(self, key: str, value: Any) -> None:
        """Inside a transaction: store one meta value (JSON)."""
        self.conn.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", (key, json.dumps(value)))

    def add_counters(self, deltas: dict[str, int]) -> None:
        """Inside a transaction: add to the persisted counters."""
        for key, delta in deltas.items():
            if delta:
                self.set_meta(key, int(self.meta(key, 0)) + delta)

    def counters(self) -> dict[str, int]:
        return {key: int(self.meta(key, 0)) for key in COUNTERS}

    def usage(self) -> tuple[int, int, int]:
        """(rows, accounted bytes, one past the highest seq accounted for: stored, or gone and counted)."""
        rows, size, top = self.conn.execute("SELECT count(*), coalesce(sum(size), 0), max(seq) FROM records").fetchone()
        next_seq = max(int(self.meta("next_seq", 1)), (top or 0) + 1)
        return int(rows), int(size), next_seq

    def insert(self, entries: Sequence[Entry]) -> None:
        """Inside a transaction: insert entries (blobs already on disk), their payloads compressed (`encoding`).

        `next_seq` is not written here: while a row holds the highest seq, `usage()` derives it from the
        rows, and a commit that leaves `meta` alone writes one page less to the WAL. Deleting rows
        records it first (`_keep_next_seq`).
        """
        self.conn.executemany(
            f"INSERT INTO records ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?)",  # noqa: S608 - constant
            [(e.seq, e.kind, e.ts, e.priority, encode(e.data), e.blob_name, e.size) for e in entries],
        )

    def keep_next_seq(self, next_seq: int) -> None:
        """Inside a transaction: every seq below `next_seq` is accounted for (stored, or gone and counted)."""
        if next_seq > int(self.meta("next_seq", 1)):
            self.set_meta("next_seq", next_seq)

    def _keep_next_seq(self) -> None:
        """Inside a transaction, before rows are deleted: persist one past the highest seq stored, so that
        no seq is reused once the rows holding it are gone."""
        top = self.conn.execute("SELECT max(seq) FROM records").fetchone()[0]
        if top is not None and top + 1 > int(self.meta("next_seq", 1)):
            self.set_meta("next_seq", top + 1)

    def eviction_candidates(self, excess: int, keep: tuple[int, int] | None) -> list[tuple[int, str | None, int]]:
        """Inside a transaction: (seq, blob, size) to delete to free `excess` bytes, lowest priority and oldest first.

        Rows of the package in flight (`keep`, a seq range) are never chosen: its bytes must stay
        identical until the server acknowledged it.
        """
        lo, hi = keep if keep else (0, -1)
        chosen: list[tuple[int, str | None, int]] = []
        freed = 0
        cur = self.conn.execute(
            "SELECT seq, blob, size FROM records WHERE seq < ? OR seq > ? ORDER BY priority, seq", (lo, hi)
        )
        for seq, blob, size in cur:
            if freed >= excess:
                break
            chosen.append((seq, blob, size))
            freed += size
        cur.close()
        return chosen

    def delete_seqs(self, seqs: Sequence[int]) -> None:
        """Inside a transaction: delete rows by seq."""
        self._keep_next_seq()
        self.conn.executemany("DELETE FROM records WHERE seq = ?", [(s,) for s in seqs])

    def delete_range(self, first: int, last: int) -> Removed:
        """Inside a transaction: delete every row with first <= seq <= last."""
        self._keep_next_seq()
        rows = self.conn.execute(
            "SELECT seq, blob, size FROM records WHERE seq BETWEEN ? AND ?", (first, last)
        ).fetchall()
        self.conn.execute("DELETE FROM records WHERE seq BETWEEN ? AND ?", (first, last))
        return Removed([r[0] for r in rows], [r[1] for r in rows if r[1]], sum(r[2] for r in rows))

    def read(self, after: int, limit: int) -> list[Record]:
        """Up to `limit` records with seq > `after`, oldest first."""
        rows = self.conn.execute(
            f"SELECT {_COLUMNS} FROM records WHERE seq > ? ORDER BY seq LIMIT ?", (after, limit)  # noqa: S608
        )
        return _records(rows)

    def read_range(self, first: int, last: int) -> list[Record]:
        rows = self.conn.execute(
            f"SELECT {_COLUMNS} FROM records WHERE seq BETWEEN ? AND ? ORDER BY seq", (first, last)  # noqa: S608
        )
        return _records(rows)

    def blob_names(self) -> set[str]:
        return {row[0] for row in self.conn.execute("SELECT blob FROM records WHERE blob IS NOT NULL")}

    def checkpoint(self) -> None:
        """Move the WAL into the database and truncate it (frees disk space after evictions)."""
        self.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")

    def close(self) -> None:
        self.conn.close()


def _records(rows: Iterator[tuple[Any, ...]]) -> list[Record]:
    """Rows of `_COLUMNS` as records, each payload as the JSON text that was appended."""
    out = []
    for seq, kind, ts, priority, data, blob, size in rows:
        try:
            text = decode(data)
        except ValueError as exc:
            raise ValueError(f"outbox record {seq}: cannot read its payload: {exc}") from exc
        out.append(Record(seq, kind, ts, priority, text, blob, size))
    return out
