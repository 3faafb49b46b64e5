"""kill -9 at arbitrary instants while the outbox writes: the database stays intact and every
acknowledged record (seq <= the last committed watermark the child printed) is there, with its blob.
"""

from __future__ import annotations

import os
import random
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

from device.outbox import Outbox, OutboxSettings

CHILD = Path(__file__).with_name("writer_child.py")


def _run_and_kill(db: Path, commits: int) -> int:
    """Start the writer child, kill -9 it after `commits` commits; the highest acknowledged seq."""
    proc = subprocess.Popen([sys.executable, str(CHILD), str(db)], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    acknowledged = 0
    try:
        assert proc.stdout.readline().strip() == "READY"
        seen = 0
        while seen < commits:
            line = proc.stdout.readline()
            assert line, "the child died on its own"
            if line.startswith("C "):
                acknowledged, seen = int(line.split()[1]), seen + 1
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(30)
    for line in proc.stdout:  # commits printed before the kill landed are acknowledged too
        if line.startswith("C "):
            acknowledged = int(line.split()[1])
    return acknowledged


def _check(db: Path) -> list[int]:
    conn = sqlite3.connect(db)
    assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    rows = conn.execute("SELECT seq, blob FROM records ORDER BY seq").fetchall()
    conn.close()
    blob_dir = db.with_name("outbox-blobs")
    for _, blob in rows:
        assert blob is None or (blob_dir / blob).stat().st_size == 3000
    return [seq for seq, _ in rows]


def test_kill_9_mid_write_loses_no_acknowledged_record(tmp_path: Path) -> None:
    db = tmp_path / "outbox.db"
    rng = random.Random(5)
    acknowledged_before = 0
    for _ in range(3):
        acknowledged = _run_and_kill(db, commits=rng.randint(3, 25))
        seqs = _check(db)
        assert acknowledged > acknowledged_before
        assert set(range(1, acknowledged + 1)) <= set(seqs)  # nothing acknowledged is missing
        assert seqs == list(range(1, seqs[-1] + 1))  # no holes: a seq is committed in order
        acknowledged_before = acknowledged
    box = Outbox(db, OutboxSettings(linger_s=0))  # startup check: orphans gone, seqs resume after the last
    referenced = {r["blob"] for r in box.records() if r["blob"]}
    assert {p.name for p in box.blobs.path.iterdir()} == referenced
    last = max(r["seq"] for r in box.records())
    assert box.append("log", {"m": "resumed"}) == last + 1
    box.close()
