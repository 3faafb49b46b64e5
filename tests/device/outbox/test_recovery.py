"""What a start makes of the last run's seqs: a reboot, a torn or foreign mark, the reservation, full-disk drops."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from device.outbox import Outbox, OutboxSettings
from device.outbox.intake import Intake
from device.outbox.issued import IssuedMark, boot_id, read_mark
from device.outbox.records import Entry
from device.outbox.store import RecordStore

OTHER_BOOT = b"\x01" * 16


def _last_run(tmp_path: Path, stored: int, reserved: int, mark: int | None, boot: bytes) -> Path:
    """An outbox as a killed run leaves it: `stored` records, seqs reserved up to `reserved`, the mark at `mark`."""
    db = tmp_path / "outbox.db"
    store = RecordStore(db)
    with store.transaction():
        store.insert([Entry(seq, "metric", "t", 1, "{}") for seq in range(1, stored + 1)])
        store.set_meta("reserved", reserved)
    store.close()
    if mark is not None:
        IssuedMark(tmp_path / "outbox-issued", boot, mark).close()
    return db


def _report(box: Outbox) -> dict:
    (report,) = [r["data"] for r in box.records("log")]
    return report


def test_after_a_reboot_the_mark_counts_what_is_known_and_the_rest_of_the_block_is_unaccounted(tmp_path: Path) -> None:
    db = _last_run(tmp_path, stored=10, reserved=100, mark=14, boot=OTHER_BOOT)
    box = Outbox(db, OutboxSettings(linger_s=0))
    stats = box.stats()
    assert (box.lost_in_crash, stats["lost_in_crash"], stats["seqs_unaccounted"]) == (4, 4, 86)
    report = _report(box)
    assert report["message"] == ("lost in crash: 4 records (seqs 11-14); after a reboot 86 more seqs (15-100) are "
                                 "unaccounted for: each was either handed out and lost, or never used")
    assert report["seq_first"] == 11 and report["seq_last"] == 100
    assert box.append("metric", {}) == 102  # the report is 101: nothing that may have been handed out is reused
    box.close()


def test_in_the_same_boot_the_mark_is_exact_and_seqs_resume_right_after_it(tmp_path: Path) -> None:
    db = _last_run(tmp_path, stored=10, reserved=100, mark=14, boot=boot_id())
    box = Outbox(db, OutboxSettings(linger_s=0))
    assert box.lost_in_crash == 4 and box.stats()["seqs_unaccounted"] == 0
    assert _report(box)["message"] == "lost in crash: 4 records (seqs 11-14)"
    assert box.append("metric", {}) == 16
    box.close()


@pytest.mark.parametrize("mark", ["missing", "torn", "foreign"])
def test_without_a_usable_mark_the_reserved_block_is_reported_as_unaccounted(tmp_path: Path, mark: str) -> None:
    db = _last_run(tmp_path, stored=10, reserved=40, mark=None if mark == "missing" else 12, boot=boot_id())
    path = tmp_path / "outbox-issued"
    if mark == "torn":  # the kill fell inside the store of a seq: its check half disagrees
        raw = bytearray(path.read_bytes())
        raw[16] ^= 0xFF
        path.write_bytes(bytes(raw))
        assert read_mark(path, boot_id()) is None
    if mark == "foreign":  # the database was replaced and the mark is of the old one
        IssuedMark(path, boot_id(), 5000).close()
    box = Outbox(db, OutboxSettings(linger_s=0))
    assert box.lost_in_crash == 0 and box.stats()["seqs_unaccounted"] == 30
    assert _report(box)["seq_first"] == 11 and box.append("metric", {}) == 42
    box.close()


def test_an_outbox_of_an_earlier_version_starts_without_a_gap(tmp_path: Path) -> None:
    db = _last_run(tmp_path, stored=10, reserved=0, mark=None, boot=boot_id())  # no reservation, no mark
    box = Outbox(db, OutboxSettings(linger_s=0))
    assert box.lost_in_crash == 0 and box.records("log") == [] and box.append("metric", {}) == 11
    box.close()


def _reserved(db: Path) -> int:
    with sqlite3.connect(db) as conn:
        return int(conn.execute("SELECT value FROM meta WHERE key = 'reserved'").fetchone()[0])


def test_seqs_are_reserved_a_block_ahead_once_per_block_and_given_back_at_a_clean_stop(tmp_path: Path) -> None:
    settings = OutboxSettings(linger_s=0, queue_size=4, queue_headroom=2, batch_max=2)  # ahead: 4 + 2 + 2 = 8
    box = Outbox(tmp_path / "outbox.db", settings)
    assert _reserved(box.path) == 16  # two blocks past the last seq handed out
    seen = set()
    for i in range(1, 41):
        assert box.append("metric", {"i": i}) == i
        box.flush()
        reserved = _reserved(box.path)
        assert reserved >= i + 8  # never fewer than a block ahead of the last seq handed out
        seen.add(reserved)
    assert sorted(seen) == [16, 25, 34, 43, 52]  # one write per 9 records here, not one per commit
    box.close()
    assert _reserved(box.path) == 40  # a clean stop gives the unused seqs back
    box = Outbox(tmp_path / "outbox.db", settings)
    assert box.records("log") == [] and box.append("metric", {}) == 41
    box.close()


def test_the_intake_never_hands_out_a_seq_beyond_the_reservation() -> None:
    intake = Intake(next_seq=1, capacity=10, headroom=0, limit=2)
    assert [intake.put("prediction", "{}", None, "jpg") for _ in range(3)] == [1, 2, None]
    assert intake.put("drift_event", "{}", None, "jpg") is None  # not even a drift event: it is counted as dropped
    assert intake.take_dropped() == {"prediction": 1, "drift_event": 1}
    intake.raise_limit(3)
    assert intake.put("prediction", "{}", None, "jpg") == 3 and intake.remaining() == 0


def test_records_a_full_disk_drops_after_they_got_a_seq_are_counted_apart(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    box = Outbox(tmp_path / "outbox.db", OutboxSettings(linger_s=0))
    box._intake.dropped.update({"prediction": 3})  # a full queue: no seq was used
    store, real_insert = box._writer.store, box._writer.store.insert

    def insert(entries: list[Entry]) -> None:  # the disk takes nothing but drift events
        if any(e.kind != "drift_event" for e in entries):
            raise sqlite3.OperationalError("database or disk is full")
        real_insert(entries)

    monkeypatch.setattr(store, "insert", insert)
    assert box.append("prediction", {"p": 1}) == 1
    assert box.append("drift_event", {"d": 1}) == 2
    box.flush()
    monkeypatch.undo()
    stats = box.stats()
    assert (stats["dropped"], stats["dropped_full_disk"], stats["lost_in_crash"]) == (4, 1, 0)
    box.close()
    box = Outbox(tmp_path / "outbox.db", OutboxSettings(linger_s=0))
    assert [r["seq"] for r in box.records()] == [2] and box.records("log") == []  # seq 1 is counted, not lost
    box.close()


def test_a_start_on_a_full_disk_takes_no_record_until_the_loss_is_recorded_then_goes_on(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    db = _last_run(tmp_path, stored=10, reserved=100, mark=14, boot=boot_id())
    full = [True]
    set_meta = RecordStore.set_meta

    def failing(self: RecordStore, key: str, value: object) -> None:
        if full[0]:
            raise sqlite3.OperationalError("database or disk is full")
        set_meta(self, key, value)

    monkeypatch.setattr(RecordStore, "set_meta", failing)
    box = Outbox(db, OutboxSettings(linger_s=0))  # starts anyway
    assert box.lost_in_crash == 4 and box.append("prediction", {"p": 1}) is None  # no seq without a reservation
    assert not box.flush(0.5)  # the report (seq 15) is not on disk yet
    full[0] = False  # room again: the writer records the report and the reservation, then takes records
    assert box.flush(10)
    assert box.append("prediction", {"p": 2}) == 16 and box.flush(10)
    stats = box.stats()
    assert (stats["lost_in_crash"], stats["dropped"]) == (4, 1)
    assert [r["seq"] for r in box.records()] == [*range(1, 11), 15, 16]
    box.close()
    box = Outbox(db, OutboxSettings(linger_s=0))
    assert box.lost_in_crash == 4 and len(box.records("log")) == 1 and box.append("metric", {}) == 17
    box.close()
