"""`scripts/simulate-fleet` against the real server: device processes through a network cut and a power
loss, 500 in-process agents, and every bad argument refused with a clear message.

Both runs check what matters after faults: every device enrolled once and seen by the server, and for
each device every seq its outbox handed out is on the server or still in its outbox, with no duplicate,
or counted: evicted, rejected, dropped on a full disk, or lost in a crash (the power loss kills the
device with records still queued), exactly, with the crash losses reported to the server.
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from device.outbox.store import RecordStore
from simulator.spec import FleetSpec, SimulationError, parse_fault
from tests.e2e.fleet import RegistryServer
from tests.e2e.server_proc import ROOT

AGENTS = int(os.environ.get("TINYMLOPS_E2E_AGENTS", "500"))  # fewer on a small machine


def simulate(registry: RegistryServer, workdir: Path, *argv: str, timeout_s: float = 600
             ) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(ROOT / "scripts" / "simulate-fleet"), "--server", registry.url, "--workdir",
                           str(workdir), *argv], cwd=ROOT, capture_output=True, text=True, timeout=timeout_s,
                          env={**os.environ, "TINYSPHERE_TOKEN": registry.operator})


def result_of(proc: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    assert proc.returncode == 0, proc.stdout + proc.stderr[-4000:]
    return dict(json.loads(proc.stdout.strip().splitlines()[-1]))


def pending_seqs(data: Path) -> list[int]:
    """Sequence numbers still in the device's outbox (committed, not yet acknowledged by the server)."""
    with sqlite3.connect(data / "outbox.db") as conn:
        return [row[0] for row in conn.execute("SELECT seq FROM records")]


def outbox_meta(data: Path) -> dict[str, int]:
    """The outbox's persisted counters (evicted, rejected, lost in crash...) and `next_seq`, one past the last
    seq it accounts for, as the outbox itself reads them at startup."""
    store = RecordStore(data / "outbox.db")
    try:
        return {**store.counters(), "next_seq": store.usage()[2]}
    finally:
        store.close()


def check_nothing_lost_or_doubled(registry: RegistryServer, workdir: Path, devices: int) -> None:
    rows = registry.db.rows("SELECT id, name, health FROM devices WHERE name LIKE 'sim-%'")
    assert len(rows) == devices, rows  # each device enrolled exactly once
    by_name = {row["name"]: row for row in rows}
    for data in sorted(workdir.glob("sim-*/data")):
        device = by_name[data.parent.name]
        packages = registry.db.wait_imported(device["id"], timeout_s=300)  # 500 agents' last packages queue up
        assert all(p["status"] == "imported" for p in packages), (data.parent.name, packages)
        server = registry.db.seqs(device["id"])
        doubled = [seq for seq, n in Counter(server).items() if n > 1]
        assert not doubled, (data.parent.name, doubled)
        # Every seq the outbox handed out (and no seq is handed out twice, crash or not) is on the server or
        # still in the outbox, or counted. (Under load an agent may not have had a frame yet: then it issued none.)
        meta = outbox_meta(data)
        issued = set(range(1, meta["next_seq"]))
        held = set(server) | set(pending_seqs(data))
        assert held <= issued, (data.parent.name, sorted(held - issued)[:20])
        missing = sorted(issued - held)
        counted = meta["evicted"] + meta["rejected"] + meta["dropped_full_disk"] + meta["lost_in_crash"]
        assert len(missing) == counted and meta["seqs_unaccounted"] == 0, (data.parent.name, missing[:20], meta)
        assert (device["health"] or {}).get("lost_in_crash", 0) == meta["lost_in_crash"], (data.parent.name, meta)


def test_device_processes_survive_a_network_cut_and_a_power_loss(registry: RegistryServer, tmp_path: Path) -> None:
    workdir = tmp_path / "fleet"
    proc = simulate(registry, workdir, "--devices", "3", "--mode", "processes", "--duration", "40",
                    "--fps", "5", "--drift", "unseen@30", "--fault", "offline@10:8", "--fault", "kill@24",
                    "--every", "4", timeout_s=300)
    result = result_of(proc)
    assert result["mode"] == "processes" and result["alive"] == 3 and result["enrolled"] == 3
    assert result["server_seen"] == 3
    assert result["faults"] == ["offline@10:8", "kill@24"]
    assert result["frames"] > 0 and result["drift_events"] > 0, result
    assert "network cut" in proc.stderr and "killed (-9)" in proc.stderr
    assert "alive 3/3" in proc.stderr
    check_nothing_lost_or_doubled(registry, workdir, 3)


def test_hundreds_of_agents_in_one_process(registry: RegistryServer, tmp_path: Path) -> None:
    workdir = tmp_path / "fleet"
    proc = simulate(registry, workdir, "--devices", str(AGENTS), "--mode", "agents", "--duration", "30",
                    "--fps", "0.5", "--heartbeat", "10", "--sync-interval", "10", "--every", "10")
    result = result_of(proc)
    log = proc.stderr[-3000:]  # the live summary lines and the drain line, for a failure
    assert result["mode"] == "agents" and result["alive"] == AGENTS and result["enrolled"] == AGENTS, (result, log)
    assert result["server_seen"] == AGENTS, (result, log)
    assert result["drained"] is True and result["outbox_depth"] == 0, (result, log)
    assert result["models"] == {"1.0.0": AGENTS} and result["frames"] > 0, result
    check_nothing_lost_or_doubled(registry, workdir, AGENTS)


@pytest.mark.parametrize(("argv", "message"), [
    (["--devices", "0", "--duration", "5"], "--devices must be between 1 and 1000"),
    (["--devices", "1001", "--duration", "5"], "--devices must be between 1 and 1000"),
    (["--devices", "60", "--mode", "processes", "--duration", "5"], "use --mode agents"),
    (["--devices", "2", "--duration", "0"], "must be > 0"),
    (["--devices", "2", "--duration", "5", "--fault", "flood@3"], "bad --fault 'flood@3'"),
    (["--devices", "2", "--duration", "5", "--fault", "offline@3"], "offline needs a duration"),
    (["--devices", "20", "--mode", "agents", "--duration", "5", "--fault", "kill@3"], "needs device processes"),
    (["--devices", "2", "--duration", "5", "--drift", "sideways@3"], "bad --drift"),
    (["--devices", "2", "--duration", "5", "--drift-share", "2"], "--drift-share must be between 0 and 1"),
    (["--devices", "2", "--duration", "5", "--name", "a b"], "bad --name"),
])
def test_bad_arguments_are_refused_before_anything_starts(argv: list[str], message: str, tmp_path: Path) -> None:
    proc = subprocess.run([sys.executable, "-m", "simulator", "--server", "http://127.0.0.1:9",
                           "--token", "x", "--workdir", str(tmp_path), *argv], cwd=ROOT, capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 2, proc.stderr
    assert message in proc.stderr
    assert not any(tmp_path.iterdir())  # nothing was enrolled or written


def test_a_wrong_server_or_token_is_a_clear_error(registry: RegistryServer, tmp_path: Path) -> None:
    base = [sys.executable, "-m", "simulator", "--devices", "1", "--duration", "5", "--workdir", str(tmp_path)]
    unreachable = subprocess.run([*base, "--server", "http://127.0.0.1:9", "--token", "x"], cwd=ROOT,
                                 capture_output=True, text=True, timeout=60)
    assert unreachable.returncode == 2 and "cannot reach http://127.0.0.1:9" in unreachable.stderr
    wrong = subprocess.run([*base, "--server", registry.url, "--token", "tso_wrong"], cwd=ROOT,
                           capture_output=True, text=True, timeout=60)
    assert wrong.returncode == 2 and "HTTP 401 (is the token an operator token?)" in wrong.stderr
    missing = subprocess.run([*base, "--server", registry.url], cwd=ROOT, capture_output=True, text=True,
                             timeout=60, env={k: v for k, v in os.environ.items() if k != "TINYSPHERE_TOKEN"})
    assert missing.returncode == 2 and "no operator token" in missing.stderr
    bad_url = subprocess.run([*base, "--server", "ftp://x", "--token", "x"], cwd=ROOT, capture_output=True,
                             text=True, timeout=60)
    assert bad_url.returncode == 2 and "bad --server 'ftp://x'" in bad_url.stderr


def test_fault_specs_parse_and_round_trip() -> None:
    assert str(parse_fault("offline@10:5")) == "offline@10:5"
    assert str(parse_fault(" kill@2.5 ")) == "kill@2.5"
    with pytest.raises(SimulationError, match="kill takes no duration"):
        parse_fault("kill@3:4")
    spec = FleetSpec(devices=10, duration_s=1, drift="unseen@5", drift_share=0.3)
    assert [spec.drift_for(i) for i in range(10)].count("unseen@5") == 3
    assert FleetSpec(devices=10, duration_s=1).resolved_mode == "processes"
    assert FleetSpec(devices=11, duration_s=1).resolved_mode == "agents"
