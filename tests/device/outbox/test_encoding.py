"""Stored payloads: compressed against a frozen dictionary, read back as the very text appended."""

from __future__ import annotations

import hashlib
import json
import sqlite3
from pathlib import Path

import pytest

from device.outbox import Outbox, OutboxSettings, encoding, store
from device.outbox.encoding import decode, encode
from device.outbox.records import Entry
from device.outbox.store import RecordStore

PREDICTION = (
    '{"frame_seq":4711,"label":"7","confidence":0.9123,"model_label":"7","model_confidence":0.8765,'
    '"latency_ms":12.345,"drift":[],"model_version":"3"}'
)
# PREDICTION as format 1 stores it: what databases on devices hold must stay readable.
PREDICTION_STORED = bytes.fromhex(
    "0143b1d9c4dcd01061bb3986f5968646c6e84e30c7e1060b7333535477181ae9199b98e2758db1522d00"
)


@pytest.mark.parametrize(
    "text",
    [
        PREDICTION,
        "",
        "{}",
        json.dumps({"message": "Grüße, 数字 \u2603 \x00", "vector": [0.1] * 300}),
        json.dumps({"level": "INFO", "message": "x" * 100_000}),
    ],
)
def test_every_payload_reads_back_as_the_text_appended(text: str) -> None:
    stored = encode(text)
    assert decode(stored) == text
    assert len(stored.encode() if isinstance(stored, str) else stored) <= len(text.encode())


def test_a_prediction_is_stored_in_under_a_third_of_its_json() -> None:
    stored = encode(PREDICTION)
    assert isinstance(stored, bytes) and len(stored) * 3 < len(PREDICTION)


def test_a_payload_compression_would_not_shrink_stays_text() -> None:
    assert encode("{}") == "{}"


def test_format_1_is_frozen() -> None:
    """Changing the dictionary would make every stored row unreadable: a new one needs a new format byte."""
    assert hashlib.sha256(encoding._DICTIONARIES[1]).hexdigest() == (
        "1d976513444b43cbd680dba77e5b55328d1c90c43654a65c63f256c6d1016fff"
    )
    assert decode(PREDICTION_STORED) == PREDICTION
    assert len(encoding._DICTIONARIES[encoding.FORMAT]) < 2**-encoding._PACK_WBITS  # all of it in the window


@pytest.mark.parametrize(
    ("stored", "message"),
    [
        (b"", "unknown stored payload format"),
        (b"\x07abc", "unknown stored payload format"),
        (PREDICTION_STORED[:-3], "truncated"),
        (PREDICTION_STORED + b"junk", "trailing"),
        (b"\x01\xff\xff\xff", "does not decompress"),
    ],
)
def test_a_damaged_payload_is_a_clear_error(stored: bytes, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        decode(stored)


def test_the_store_keeps_payloads_compressed_and_names_a_damaged_row(tmp_path: Path) -> None:
    db = RecordStore(tmp_path / "outbox.db")
    with db.transaction():
        db.insert([Entry(1, "prediction", "2026-01-01T00:00:00+00:00", 0, PREDICTION)])
    kind, length = db.conn.execute("SELECT typeof(data), length(data) FROM records").fetchone()
    assert kind == "blob" and length == len(PREDICTION_STORED)
    assert db.read(0, 10)[0].data == PREDICTION
    db.conn.execute("UPDATE records SET data = X'0100'")
    with pytest.raises(ValueError, match="outbox record 1: cannot read its payload"):
        db.read(0, 10)
    db.close()


def test_rows_stored_as_text_by_an_older_outbox_read_as_they_are(tmp_path: Path) -> None:
    box = Outbox(tmp_path / "outbox.db", OutboxSettings(linger_s=0))
    box.close()
    with sqlite3.connect(tmp_path / "outbox.db") as conn:  # as the outbox stored payloads before
        conn.execute(
            "INSERT INTO records (seq, kind, ts, priority, data, size) VALUES (1, 'prediction', 't', 0, ?, 0)",
            (PREDICTION,),
        )
    conn.close()
    box = Outbox(tmp_path / "outbox.db", OutboxSettings(linger_s=0))
    seq = box.append("prediction", json.loads(PREDICTION))
    assert [(r["seq"], r["data"]) for r in box.records()] == [
        (1, json.loads(PREDICTION)),
        (seq, json.loads(PREDICTION)),
    ]
    assert box.backlog.pending()[1].data == PREDICTION  # the text appended, byte for byte
    box.close()


def _wal_growth(path: Path) -> int:
    db = RecordStore(path)
    with db.transaction():
        db.insert([Entry(1, "log", "t", 1, "{}")])
    before = (path.parent / (path.name + "-wal")).stat().st_size
    for commit in range(150):  # five frames' predictions a commit, as at 5 fps
        with db.transaction():
            db.insert(
                [
                    Entry(2 + 5 * commit + i, "prediction", "2026-01-01T00:00:00.123456+00:00", 0, PREDICTION)
                    for i in range(5)
                ]
            )
    grown = (path.parent / (path.name + "-wal")).stat().st_size - before
    db.close()
    return grown


def test_compressed_payloads_make_each_commit_append_less_to_the_wal(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    compressed = _wal_growth(tmp_path / "compressed.db")
    monkeypatch.setattr(store, "encode", lambda text: text)
    plain = _wal_growth(tmp_path / "plain.db")
    assert compressed < 0.9 * plain, (compressed, plain)  # the leaves; page 1, parents, the index stay
