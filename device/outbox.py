"""The local buffer: every record the appliance produces, in SQLite (WAL), until the server has it.

Each record has a per-device, never-reused sequence number (`seq`), a kind, a priority and a JSON
payload; images are blobs written atomically beside the database and referenced by name.
"""

from __future__ import annotations

import json
import logging
import sqlite3
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from device.state import write_bytes_atomic

log = logging.getLogger(__name__)

KINDS = ("prediction", "drift_event", "adaptation", "metric", "log", "image")
PRIORITY = {"prediction": 0, "metric": 1, "log": 1, "image": 1, "adaptation": 2, "drift_event": 3}

_SCHEMA = """
CREATE TABLE IF NOT EXISTS records (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    kind TEXT NOT NULL,
    ts TEXT NOT NULL,
    priority INTEGER NOT NULL,
    data TEXT NOT NULL,
    blob TEXT
)
"""


class Outbox:
    """Append-only record store; `seq` is assigned by SQLite and never reused (AUTOINCREMENT)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.blob_dir = self.path.with_name(self.path.stem + "-blobs")
        self.blob_dir.mkdir(exist_ok=True)
        self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute(_SCHEMA)
        self._remove_orphans()

    def _remove_orphans(self) -> None:
        """Blobs written just before a crash, whose record never committed, are deleted."""
        referenced = {row[0] for row in self._db.execute("SELECT blob FROM records WHERE blob IS NOT NULL")}
        for path in self.blob_dir.iterdir():
            if path.name not in referenced:
                log.info("removing orphaned blob %s", path.name)
                path.unlink(missing_ok=True)

    def append(self, kind: str, data: dict[str, Any], blob: bytes | None = None, blob_ext: str = "jpg") -> int:
        """Store one record (and its blob); returns its `seq`."""
        if kind not in KINDS:
            raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
        blob_name = None
        if blob is not None:
            blob_name = f"{datetime.now(UTC):%Y%m%dT%H%M%S%f}-{kind}.{blob_ext}"
            write_bytes_atomic(self.blob_dir / blob_name, blob)
        cur = self._db.execute(
            "INSERT INTO records (kind, ts, priority, data, blob) VALUES (?, ?, ?, ?, ?)",
            (kind, datetime.now(UTC).isoformat(), PRIORITY[kind], json.dumps(data, separators=(",", ":")), blob_name),
        )
        return int(cur.lastrowid or 0)

    def depth(self) -> int:
        """Records waiting for the server."""
        return int(self._db.execute("SELECT count(*) FROM records").fetchone()[0])

    def records(self, kind: str | None = None) -> list[dict[str, Any]]:
        """All records (of one kind), oldest first."""
        sql = "SELECT seq, kind, ts, priority, data, blob FROM records"
        rows = self._db.execute(sql + " WHERE kind = ? ORDER BY seq", (kind,)) if kind else self._db.execute(sql)
        return [
            {"seq": s, "kind": k, "ts": t, "priority": p, "data": json.loads(d), "blob": b}
            for s, k, t, p, d, b in rows
        ]

    def close(self) -> None:
        self._db.close()
