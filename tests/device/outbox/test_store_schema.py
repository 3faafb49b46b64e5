"""The outbox database's schema is the one the first outboxes had, and the outbox imports plain sqlite3 only."""

import sqlite3
import subprocess
import sys
from pathlib import Path

from device.outbox.store import RecordStore

# As sqlite-utils created it, which databases on devices already have.
SCHEMA = [
    ("table", "records", 'CREATE TABLE "records" (\n   "seq" INTEGER PRIMARY KEY,\n   "kind" TEXT NOT NULL,\n'
     '   "ts" TEXT NOT NULL,\n   "priority" INTEGER NOT NULL,\n   "data" TEXT NOT NULL,\n   "blob" TEXT,\n'
     '   "size" INTEGER NOT NULL DEFAULT 0\n)'),
    ("index", "records_eviction", 'CREATE INDEX "records_eviction"\n    ON "records" ("priority", "seq")'),
    ("table", "meta", 'CREATE TABLE "meta" (\n   "key" TEXT PRIMARY KEY,\n   "value" TEXT\n)'),
    ("index", "sqlite_autoindex_meta_1", None),
]


def test_a_new_database_has_the_schema_of_the_first_outboxes(tmp_path: Path) -> None:
    store = RecordStore(tmp_path / "outbox.db")
    assert store.conn.execute("SELECT type, name, sql FROM sqlite_master").fetchall() == SCHEMA
    assert store.conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    store.close()
    reopened = RecordStore(tmp_path / "outbox.db")  # opening an existing database changes nothing
    assert reopened.conn.execute("SELECT type, name, sql FROM sqlite_master").fetchall() == SCHEMA
    reopened.close()


def test_the_outbox_does_not_import_sqlite_utils() -> None:
    code = "import sys, device.outbox; print('sqlite_utils' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout == "False\n"


def test_the_wal_budget_is_in_bytes_whatever_the_page_size(tmp_path: Path) -> None:
    old = sqlite3.connect(tmp_path / "old.db")  # a database created with SQLite's default 4 KiB pages
    old.execute("PRAGMA page_size=4096")
    old.execute("VACUUM")
    old.close()
    for name, pages in (("new.db", 2**20 // 512), ("old.db", 2**20 // 4096)):
        store = RecordStore(tmp_path / name)
        assert store.conn.execute("PRAGMA wal_autocheckpoint").fetchone()[0] == pages
        assert store.conn.execute("PRAGMA journal_size_limit").fetchone()[0] == 2**20
        store.close()
