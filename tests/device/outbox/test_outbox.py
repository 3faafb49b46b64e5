"""The outbox: seqs, queue overflow, the disk bound and its eviction order, orphans, degraded disks."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from device.outbox import Outbox, OutboxSettings
from device.outbox.intake import Intake
from device.outbox.records import ROW_OVERHEAD


def _open(path: Path, **settings: float) -> Outbox:
    return Outbox(path / "outbox.db", OutboxSettings(linger_s=0, **settings))  # type: ignore[arg-type]


def test_append_returns_increasing_seqs_and_records_survive_reopening(tmp_path: Path) -> None:
    box = _open(tmp_path)
    seqs = [box.append("prediction", {"i": i}) for i in range(5)]
    assert seqs == [1, 2, 3, 4, 5]
    seq = box.append("drift_event", {"detector": "knn"}, blob=b"jpeg-bytes")
    box.close()
    box = _open(tmp_path)
    records = box.records()
    assert [r["seq"] for r in records] == [1, 2, 3, 4, 5, 6] and seq == 6
    assert records[5]["blob"] == "000000000006.jpg"
    assert box.backlog.blob("000000000006.jpg") == b"jpeg-bytes"
    assert box.depth() == 6
    box.close()


def test_a_seq_is_never_reused_after_its_record_was_delivered(tmp_path: Path) -> None:
    box = _open(tmp_path)
    for i in range(3):
        box.append("metric", {"name": "x", "value": i})
    box.flush()
    assert box.backlog.acknowledge(1, 3) == 3
    box.close()
    box = _open(tmp_path)
    assert box.depth() == 0
    assert box.append("log", {"message": "after"}) == 4
    box.close()


def test_a_full_queue_drops_low_priority_records_and_counts_them_by_kind() -> None:
    intake = Intake(next_seq=10, capacity=2, headroom=1)
    assert [intake.put("prediction", "{}", None, "jpg") for _ in range(3)] == [10, 11, None]
    assert intake.put("drift_event", "{}", None, "jpg") == 12  # into the headroom
    assert intake.put("adaptation", "{}", None, "jpg") is None  # headroom used up
    assert intake.put("metric", "{}", None, "jpg") is None
    assert intake.take_dropped() == {"prediction": 1, "adaptation": 1, "metric": 1}
    assert [e.seq for e in intake.take(10, timeout=0)] == [10, 11, 12]
    assert intake.put("prediction", "{}", None, "jpg") == 13  # a dropped record used no seq


def test_drop_counts_are_persisted_and_reported(tmp_path: Path) -> None:
    box = _open(tmp_path)
    box._intake.dropped.update({"prediction": 7})
    box.close()
    box = _open(tmp_path)
    assert box.stats()["dropped"] == 7
    box.close()


def _fill(box: Outbox) -> tuple[list[int], list[int], list[int]]:
    drift = [box.append("drift_event", {"d": i}, blob=b"j" * 400) for i in range(3)]
    adapt = [box.append("adaptation", {"a": i}) for i in range(3)]
    box.flush()
    preds = [box.append("prediction", {"p": i, "pad": "x" * 100}) for i in range(200)]
    box.flush()
    return drift, adapt, preds  # type: ignore[return-value]


def test_over_the_bound_the_oldest_lowest_priority_records_are_evicted_first(tmp_path: Path) -> None:
    box = _open(tmp_path, max_mb=8000 / 2**20)
    drift, adapt, preds = _fill(box)
    kept = {r["seq"] for r in box.records()}
    assert set(drift) | set(adapt) <= kept  # drift events (and their images) and adaptations stay
    kept_preds = sorted(kept & set(preds))
    assert kept_preds == preds[len(preds) - len(kept_preds):]  # the newest predictions
    assert box.usage.size <= 8000 and box.usage.size == sum(
        ROW_OVERHEAD + len(r.data) + (400 if r.blob else 0) for r in box.backlog.pending(0, 10_000))
    assert box.stats()["evicted"] == len(preds) - len(kept_preds) > 0
    assert box.blobs.total_bytes() == 3 * 400
    box.close()


def test_drift_events_go_last_and_take_their_images_with_them(tmp_path: Path) -> None:
    box = _open(tmp_path, max_mb=1500 / 2**20)
    drift = [box.append("drift_event", {"d": i}, blob=b"j" * 400) for i in range(6)]
    box.flush()
    kept = [r["seq"] for r in box.records()]
    assert kept == drift[-len(kept):] and len(kept) < 6
    assert sorted(p.name for p in box.blobs.path.iterdir()) == [f"{s:012d}.jpg" for s in kept]
    box.close()


def test_the_package_in_flight_is_never_evicted(tmp_path: Path) -> None:
    box = _open(tmp_path, max_mb=4000 / 2**20)
    first = [box.append("prediction", {"p": i}) for i in range(5)]
    box.flush()
    box.backlog.set_in_flight({"seq_first": first[0], "seq_last": first[-1]})
    for i in range(200):
        box.append("prediction", {"p": i, "pad": "x" * 100})
    box.flush()
    assert set(first) <= {r["seq"] for r in box.records()}
    box.close()


def test_orphaned_blobs_and_temp_files_are_removed_at_startup(tmp_path: Path) -> None:
    box = _open(tmp_path)
    box.append("drift_event", {"d": 1}, blob=b"keep")
    box.close()
    (tmp_path / "outbox-blobs" / "000000000002.jpg").write_bytes(b"orphan")
    (tmp_path / "outbox-blobs" / ".000000000003.jpg.x.tmp").write_bytes(b"half")
    box = _open(tmp_path)
    assert sorted(p.name for p in box.blobs.path.iterdir()) == ["000000000001.jpg"]
    assert box.append("log", {"m": 1}) == 2
    box.close()


def test_a_database_of_the_first_outbox_is_upgraded(tmp_path: Path) -> None:
    db = sqlite3.connect(tmp_path / "outbox.db")
    db.execute("CREATE TABLE records (seq INTEGER PRIMARY KEY AUTOINCREMENT, kind TEXT NOT NULL, ts TEXT NOT NULL,"
               " priority INTEGER NOT NULL, data TEXT NOT NULL, blob TEXT)")
    db.execute("INSERT INTO records (kind, ts, priority, data) VALUES ('log', 't', 1, '{}')")
    db.commit()
    db.close()
    box = _open(tmp_path)
    assert box.append("log", {}) == 2 and box.depth() == 2
    box.close()


@pytest.mark.parametrize("delete", ["evicted", "delivered"])
def test_no_seq_is_reused_when_the_rows_holding_the_highest_seqs_are_deleted(tmp_path: Path, delete: str) -> None:
    from device.outbox.records import Entry
    from device.outbox.store import RecordStore

    store = RecordStore(tmp_path / "outbox.db")
    with store.transaction():
        store.insert([Entry(seq, "metric", "t", 1, "{}") for seq in range(1, 6)])
    assert store.meta("next_seq") is None and store.usage()[2] == 6  # derived from the rows: no meta write
    with store.transaction():
        if delete == "evicted":
            store.delete_seqs([4, 5])
        else:
            store.delete_range(1, 5)
    store.conn.close()
    reopened = RecordStore(tmp_path / "outbox.db")
    assert reopened.meta("next_seq") == 6 and reopened.usage()[2] == 6
    reopened.conn.close()


def _wal_bytes_per_commit(path: Path) -> float:
    box = _open(path)
    box.append("log", {"message": "warm-up"})
    box.flush()
    wal = path / "outbox.db-wal"
    before = wal.stat().st_size
    for i in range(20):  # one record per commit, as at a low frame rate
        box.append("prediction", {"label": "3", "confidence": 0.9, "i": i})
        box.flush()
    grown = wal.stat().st_size - before
    box.close()
    return grown / 20


def test_a_new_outbox_uses_small_pages_so_each_commit_writes_less(tmp_path: Path) -> None:
    (tmp_path / "new").mkdir()
    small = _wal_bytes_per_commit(tmp_path / "new")
    (tmp_path / "old").mkdir()  # a database created with SQLite's default 4 KiB pages keeps them, and works
    db = sqlite3.connect(tmp_path / "old" / "outbox.db")
    db.execute("PRAGMA page_size=4096")
    db.execute("VACUUM")
    db.close()
    large = _wal_bytes_per_commit(tmp_path / "old")
    for name, size in (("new", 512), ("old", 4096)):
        with sqlite3.connect(tmp_path / name / "outbox.db") as conn:
            assert conn.execute("PRAGMA page_size").fetchone()[0] == size
    assert small * 2 < large, (small, large)


def test_a_full_disk_lowers_the_bound_evicts_and_keeps_high_priority_records(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    box = _open(tmp_path)
    for i in range(50):
        box.append("prediction", {"p": i, "pad": "x" * 2000})
    box.flush()
    store = box._writer.store
    real_insert, failures = store.insert, [2]

    def insert(entries: list) -> None:  # the disk is full for the next two attempts
        if failures[0]:
            failures[0] -= 1
            raise sqlite3.OperationalError("database or disk is full")
        real_insert(entries)

    monkeypatch.setattr(store, "insert", insert)
    box.append("prediction", {"late": 1})
    box.append("drift_event", {"d": 1})
    box.flush()
    records = box.records()
    assert [r["kind"] for r in records].count("drift_event") == 1  # kept on the second retry
    assert not any("late" in r["data"] for r in records) and box.stats()["dropped"] == 1
    assert box.usage.bound < 256 * 2**20 and box.stats()["evicted"] > 0
    assert box.append("log", {"still": "running"}) is not None
    box.close()


def test_unserialisable_payload_is_kept_as_text_without_a_gap(tmp_path) -> None:
    from device.outbox import Outbox

    outbox = Outbox(tmp_path / "o.db")
    seqs = [outbox.append("metric", {"value": 1.0}), outbox.append("metric", {"value": object()}),
            outbox.append("metric", {"value": 3.0})]
    assert outbox.flush(10)
    records = outbox.records("metric")
    assert [r["seq"] for r in records] == seqs
    assert "unserialisable" in records[1]["data"] and records[2]["data"] == {"value": 3.0}
    outbox.close()


def test_depth_counts_a_batch_the_writer_is_committing(tmp_path: Path) -> None:
    """Between the writer taking a batch and the batch being stored, the records are still waiting: a caller
    that drains until `depth()` is 0 must not stop while they are in flight."""
    import threading

    box = _open(tmp_path)
    writer = box._writer
    taken, release = threading.Event(), threading.Event()
    commit = writer.commit

    def slow_commit(batch: object) -> None:
        taken.set()
        release.wait(10)
        commit(batch)  # type: ignore[arg-type]

    writer.commit = slow_commit  # type: ignore[method-assign]
    for i in range(3):
        box.append("metric", {"name": "x", "value": i})
    assert taken.wait(10)
    assert len(box._intake) == 0 and box.depth() == 3  # none queued, none stored: all three in flight
    release.set()
    assert box.flush(10) and box.depth() == 3
    assert box.backlog.acknowledge(1, 3) == 3 and box.depth() == 0
    box.close()
