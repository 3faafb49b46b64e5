"""`tinylcm` as a user runs it: a real process, real TFLite, the factory bundle."""

import json
import os
import re
import signal
import sqlite3
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from PIL import Image

from device.capture.digits import DigitsSource
from tests.utils.bundles import FACTORY
from tests.utils.wait import wait_until

TINYLCM = [sys.executable, "-m", "device.cli"]


def tinylcm(*args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*TINYLCM, *args], capture_output=True, text=True, timeout=timeout)


def jsonl(stdout: str) -> tuple[list[dict], dict]:
    rows = [json.loads(line) for line in stdout.splitlines() if line.strip()]
    return rows[:-1], rows[-1]["summary"]


def test_replay_digits_accuracy_and_schema() -> None:
    out = tinylcm("replay", "--bundle", str(FACTORY), "--source", "digits", "--limit", "400", "--jsonl")
    assert out.returncode == 0, out.stderr
    rows, summary = jsonl(out.stdout)
    assert len(rows) == 400 and [r["seq"] for r in rows] == list(range(400))
    assert {"seq", "label", "confidence", "latency_ms", "drift"} <= set(rows[0])
    assert summary["samples"] == 400
    assert summary["accuracy"] >= 0.9
    assert {"drift_events", "latency_ms_p50", "latency_ms_p95"} <= set(summary)


def test_replay_directory_skips_bad_frames(tmp_path) -> None:
    for i, frame in enumerate(DigitsSource(seed=5, limit=6)):
        (tmp_path / frame.label).mkdir(exist_ok=True)
        Image.fromarray(frame.image).save(tmp_path / frame.label / f"{i}.png")
    Image.new("RGB", (40, 40)).save(tmp_path / "wrong-size.png")
    (tmp_path / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 truncated")
    out = tinylcm("replay", "--bundle", str(FACTORY), "--source", f"dir:{tmp_path}", "--jsonl")
    assert out.returncode == 0, out.stderr
    rows, summary = jsonl(out.stdout)
    assert len(rows) == 6 and summary["samples"] == 6
    assert "wrong-size.png: image is 40x40, expected 32x32" in out.stderr
    assert "broken.jpg: cannot decode image" in out.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--source", "dir:/nonexistent"], "/nonexistent: not a directory"),
        (["--source", "webcam"], "unknown source 'webcam'"),
        (["--drift", "sideways@10"], "bad drift spec 'sideways@10'"),
        (["--bundle", "/nonexistent"], "/nonexistent: bundle directory does not exist"),
    ],
)
def test_replay_bad_input_exits_non_zero_with_one_clear_error(args: list[str], message: str) -> None:
    out = tinylcm("replay", "--limit", "3", *args)
    assert out.returncode == 2
    assert message in out.stderr
    assert "Traceback" not in out.stderr


def test_replay_empty_folder(tmp_path) -> None:
    out = tinylcm("replay", "--source", f"dir:{tmp_path}")
    assert out.returncode == 2 and "no images" in out.stderr


def test_run_config_errors_before_start(tmp_path) -> None:
    cfg = tmp_path / "c.json"
    cfg.write_text(json.dumps({"camera": {"source": "digits", "fsp": 3}}))
    out = tinylcm("run", "--config", str(cfg))
    assert out.returncode == 2
    assert f"{cfg}: unknown key(s) ['fsp']" in out.stderr


def _wait_for(pattern: str, proc: subprocess.Popen, timeout: float = 60) -> re.Match[str]:
    assert proc.stderr is not None
    deadline = time.monotonic() + timeout
    seen = ""
    while time.monotonic() < deadline:
        line = proc.stderr.readline()
        seen += line
        if m := re.search(pattern, line):
            return m
    raise AssertionError(f"{pattern!r} not in:\n{seen}")


@pytest.mark.parametrize("overlap", [False, True], ids=["sequential", "overlapped"])
def test_run_serves_health_and_stops_cleanly_on_sigterm(tmp_path: Path, overlap: bool) -> None:
    cfg = tmp_path / "c.json"
    cfg.write_text(json.dumps({
        "device": {"data_dir": str(tmp_path / "data"), "health_port": 0, "overlap": overlap},
        "camera": {"source": "digits", "fps": 50, "realtime": True},  # paced like a camera
        "feature_extractor": {"bundle": str(FACTORY)},
    }))
    proc = subprocess.Popen([*TINYLCM, "run", "--config", str(cfg)], stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        started = _wait_for(r"\((sequential|decided on a second thread)[^)]*\); health on 127\.0\.0\.1:(\d+)", proc)
        assert started.group(1) == ("decided on a second thread" if overlap else "sequential")
        port = int(started.group(2))
        def twenty_frames() -> dict | None:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5) as resp:
                health = json.load(resp)
            return health if health["frames"] >= 20 else None

        health = wait_until(twenty_frames, 30, "20 frames in /healthz", interval=0.2)
        assert health["status"] == "ok" and health["frames"] >= 20
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
            assert "tinylcm_frames_total " in resp.read().decode()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
    finally:
        proc.kill()
    db = sqlite3.connect(tmp_path / "data" / "outbox.db")
    (n,) = db.execute("SELECT count(*) FROM records WHERE kind = 'prediction'").fetchone()
    assert n >= 20
    # Every frame left one prediction: stored, or dropped by a full queue and counted (a stalled disk).
    dropped = db.execute("SELECT coalesce(sum(value), 0) FROM meta WHERE key = 'dropped'").fetchone()[0]
    state = tmp_path / "data" / "state" / "digits-1.0.0"
    assert json.loads((state / "frames.json").read_text())["next_seq"] == n + int(dropped)
    # A clean stop loses nothing in a crash and gives back the seqs it reserved: the next start finds no gap.
    meta = dict(db.execute("SELECT key, value FROM meta").fetchall())
    (top,) = db.execute("SELECT max(seq) FROM records").fetchone()
    assert int(meta.get("lost_in_crash", 0)) == 0 and int(meta["reserved"]) == top
    assert {"monitor.json", "adapt_state.npz"} <= {p.name for p in state.iterdir()}


def test_replay_catches_unseen_classes_within_30_frames_and_not_before() -> None:
    out = tinylcm("replay", "--bundle", str(FACTORY), "--source", "digits", "--drift", "unseen@300",
                  "--limit", "600", "--jsonl")
    assert out.returncode == 0, out.stderr
    rows, summary = jsonl(out.stdout)
    fired = [r["seq"] for r in rows if r["drift"]]
    assert fired and 300 <= fired[0] < 330
    assert summary["first_drift_seq"] == fired[0] == 309  # seeded: the exact frame
    assert summary["drift_events"] >= 1


# ---------------------------------------------------------------- errors, --version, help

def _one_error_line(err: str, prog: str = "tinylcm") -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    assert lines[0].startswith(f"{prog}: error: ")
    return lines[0]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["run", "--config", "/nonexistent/c.json"], "/nonexistent/c.json: configuration file not found"),
        (["updater", "--status", "--config", "/nonexistent/c.json"],
         "/nonexistent/c.json: configuration file not found"),
        (["replay", "--bundle", "/nonexistent", "--limit", "1"], "/nonexistent: bundle directory does not exist"),
    ],
)
def test_an_expected_error_is_one_line_and_status_2(args: list[str], message: str) -> None:
    out = tinylcm(*args)
    assert out.returncode == 2
    assert message in _one_error_line(out.stderr)


def test_run_with_a_config_that_is_not_json_is_one_line(tmp_path: Path) -> None:
    cfg = tmp_path / "c.json"
    cfg.write_text("{not json")
    out = tinylcm("run", "--config", str(cfg))
    assert out.returncode == 2 and f"{cfg}: not valid JSON" in _one_error_line(out.stderr)


def test_debug_adds_the_traceback() -> None:
    out = tinylcm("--debug", "run", "--config", "/nonexistent/c.json")
    assert out.returncode == 2
    assert "Traceback (most recent call last)" in out.stderr and "device.errors.ConfigError" in out.stderr
    assert out.stderr.strip().splitlines()[-1] == "tinylcm: error: /nonexistent/c.json: configuration file not found"


def test_the_updater_entry_point_says_one_line_too(capsys: pytest.CaptureFixture[str]) -> None:
    from device.updater.cli import main as updater_main

    assert updater_main(["--status", "--config", "/nonexistent/c.json"]) == 2
    assert "configuration file not found" in _one_error_line(capsys.readouterr().err, "tinylcm updater")


def test_version_comes_from_the_installed_distribution(capsys: pytest.CaptureFixture[str]) -> None:
    from importlib.metadata import version

    from device.updater.cli import main as updater_main

    out = tinylcm("--version")
    assert out.returncode == 0 and out.stdout.strip() == f"tinylcm {version('tinymlops')}"
    with pytest.raises(SystemExit) as exited:
        updater_main(["--version"])
    assert exited.value.code == 0 and capsys.readouterr().out.strip() == f"tinylcm updater {version('tinymlops')}"


def test_every_option_has_help() -> None:
    from device.cli import build_parser
    from tests.utils.cli import undocumented

    assert undocumented(build_parser(), "tinylcm") == []


def test_help_names_the_environment() -> None:
    out = tinylcm("--help")
    assert out.returncode == 0
    for variable in ("TINYMLOPS_SERVER_URL", "TINYMLOPS_ENROLLMENT_TOKEN", "TINYMLOPS_DEVICE_NAME", "data_dir"):
        assert variable in out.stdout
