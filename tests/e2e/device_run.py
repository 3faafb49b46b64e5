"""Running the device process and reading its ledger; the per-fault accounting of records."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from device.outbox.store import RecordStore
from tests.utils.wait import wait_until

DEVICE = Path(__file__).with_name("device_proc.py")
ROOT = Path(__file__).resolve().parents[2]


@dataclass
class LedgerView:
    issued: list[int] = field(default_factory=list)  # seqs `append` handed out, over all runs (a repeat: reused)
    committed: set[int] = field(default_factory=set)
    evicted: set[int] = field(default_factory=set)
    delivered: set[int] = field(default_factory=set)
    frames: list[int] = field(default_factory=list)
    appended: Counter[str] = field(default_factory=Counter)  # by kind, over all runs
    labels: list[tuple[int, int, str]] = field(default_factory=list)  # (label id, seq, label) as received
    produced_all: bool = False
    done: bool = False


def read_ledger(path: Path) -> LedgerView:
    view = LedgerView()
    if not path.exists():
        return view
    for line in path.read_text().splitlines():
        parts = line.split()
        if not parts:
            continue
        try:
            numbers = [int(p) for p in parts[1:]] if parts[0] not in ("K", "L") else []
        except ValueError:  # a line cut short by kill -9
            continue
        tag = parts[0]
        if tag == "L" and len(parts) == 4:
            view.labels.append((int(parts[1]), int(parts[2]), parts[3]))
            continue
        if tag == "K":
            view.appended.update({k: int(v) for k, _, v in (p.partition("=") for p in parts[1:])})
            continue
        if tag == "A" and len(numbers) == 1:
            view.issued.append(numbers[0])
        elif tag == "C" and len(numbers) == 2:
            view.committed.update(range(numbers[0], numbers[1] + 1))
        elif tag == "E":
            view.evicted.update(numbers)
        elif tag == "D":
            view.delivered.update(numbers)
        elif tag == "F" and numbers:
            view.frames.append(numbers[0])
        elif tag == "P":
            view.produced_all = True
        elif tag == "DONE":
            view.done = True
    return view


class Device:
    """One device: a data dir, a ledger, and runs of `device_proc.py` against `server_url`."""

    def __init__(self, workdir: Path, server_url: str, token: str) -> None:
        self.workdir = workdir
        self.data_dir = workdir / "data"
        self.ledger = workdir / "ledger.txt"
        self.identity = workdir / "identity.json"
        self.server_url = server_url
        self.token = token
        self.outbox_seen: set[int] = set()  # seqs found in the outbox database between runs
        self.runs = 0
        self.procs: list[subprocess.Popen[bytes]] = []

    def start(self, *extra: str, wrapper: list[str] | None = None, **options: Any) -> subprocess.Popen[bytes]:
        self.runs += 1
        args = [f"--data-dir={self.data_dir}", f"--server-url={self.server_url}", f"--token={self.token}",
                f"--ledger={self.ledger}", f"--seed={self.runs}", f"--identity-path={self.identity}"]
        args += [f"--{k.replace('_', '-')}={v}" for k, v in options.items()] + list(extra)
        log = (self.workdir / f"device-{self.runs}.log").open("ab")
        self.data_dir.mkdir(parents=True, exist_ok=True)
        proc = subprocess.Popen([*(wrapper or []), sys.executable, str(DEVICE), *args], stdout=log, stderr=log,
                                cwd=ROOT, env={**os.environ, "PYTHONUNBUFFERED": "1"})
        self.procs.append(proc)
        return proc

    def kill(self) -> None:
        """Kill every process of this device still running (test teardown)."""
        for proc in self.procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait(30)

    def run(self, *extra: str, timeout_s: float = 120, **options: Any) -> int:
        proc = self.start(*extra, **options)
        try:
            return proc.wait(timeout_s)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            self.note_outbox()

    def note_outbox(self) -> None:
        """Remember every seq the outbox holds now (committed, possibly not ledgered before a kill)."""
        db = self.data_dir / "outbox.db"
        if db.exists():
            conn = sqlite3.connect(db)
            assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
            self.outbox_seen |= {r[0] for r in conn.execute("SELECT seq FROM records")}
            conn.close()

    def counters(self) -> dict[str, int]:
        """The outbox's persisted counters (evicted, rejected, lost in crash...), as the outbox reads them."""
        store = RecordStore(self.data_dir / "outbox.db")
        try:
            return store.counters()
        finally:
            store.close()

    def in_flight(self) -> dict[str, Any] | None:
        """The package the outbox has marked in flight, if any."""
        conn = sqlite3.connect(self.data_dir / "outbox.db")
        row = conn.execute("SELECT value FROM meta WHERE key = 'in_flight'").fetchone()
        conn.close()
        return json.loads(row[0]) if row else None

    @property
    def device_id(self) -> str:
        return str(json.loads(self.identity.read_text())["device_id"])

    def view(self) -> LedgerView:
        return read_ledger(self.ledger)

    def wait_for(self, predicate: Any, timeout_s: float = 60, proc: subprocess.Popen[bytes] | None = None) -> None:
        def there() -> bool:
            if predicate(self.view()):
                return True
            assert proc is None or proc.poll() is None, f"device exited with {proc.returncode}; see {self.workdir}"
            return False

        wait_until(there, timeout_s, f"the device to get there (see {self.workdir})")


@dataclass
class Accounting:
    """Per device: every seq handed out ends delivered, evicted, rejected, dropped on a full disk or lost in
    a crash (the last three counted by the outbox); `lost` is what none of them covers, `reissued` the seqs
    handed out twice."""

    fault: str
    produced: int
    delivered: int
    evicted: int
    rejected: int
    lost_in_crash: int
    dropped_full_disk: int
    duplicated: int
    reissued: int
    lost: int
    reported_evictions: int | None
    reported_lost_in_crash: int | None
    frames: int
    extra: dict[str, Any] = field(default_factory=dict)

    def line(self) -> str:
        more = " ".join(f"{k}={v}" for k, v in self.extra.items())
        return (f"{self.fault:<28} produced={self.produced:<5} delivered={self.delivered:<5} "
                f"evicted={self.evicted:<5} rejected={self.rejected} lost_in_crash={self.lost_in_crash} "
                f"dropped_full_disk={self.dropped_full_disk} duplicated={self.duplicated} "
                f"reissued={self.reissued} lost={self.lost} reported_evictions={self.reported_evictions} "
                f"reported_lost_in_crash={self.reported_lost_in_crash} frames={self.frames} {more}").rstrip()

    def balances(self) -> bool:
        """produced = delivered + evicted + rejected + lost in crash + dropped on a full disk, exactly."""
        return self.produced == (self.delivered + self.evicted + self.rejected + self.lost_in_crash
                                 + self.dropped_full_disk)


def account(fault: str, device: Device, server: Any, **extra: Any) -> Accounting:
    """Compare what the device produced with what the server holds, by (device_id, seq)."""
    view = device.view()
    device_id = device.device_id
    packages = server.wait_imported(device_id)
    bad = [p for p in packages if p["status"] != "imported"]
    assert not bad, f"packages not imported: {bad}"
    seqs = server.seqs(device_id)
    delivered = set(seqs)
    covered: dict[int, int] = {}
    for p in packages:
        for seq in range(p["seq_first"], p["seq_last"] + 1):
            if seq in delivered:
                covered[seq] = covered.get(seq, 0) + 1
    duplicated = (len(seqs) - len(delivered)) + sum(n - 1 for n in covered.values())
    # Handed out by `append`, or by the outbox itself (its crash reports), committed, or delivered.
    produced = set(view.issued) | view.committed | device.outbox_seen | delivered
    evicted = view.evicted - delivered
    counters = device.counters()
    counted = counters["rejected"] + counters["lost_in_crash"] + counters["dropped_full_disk"]
    lost = len(produced - delivered - evicted) - counted
    health = server.device(device_id)
    return Accounting(fault, len(produced), len(delivered), len(evicted), counters["rejected"],
                      counters["lost_in_crash"], counters["dropped_full_disk"], duplicated,
                      len(view.issued) - len(set(view.issued)), lost, health["evictions"],
                      (health["health"] or {}).get("lost_in_crash"), max(view.frames, default=0), extra)
