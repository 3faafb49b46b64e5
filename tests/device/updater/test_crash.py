"""Power loss (SIGKILL) at every updater state and in the middle of its operations, then a resume.

At the instant of the kill, `models/current` must name a complete, verified bundle; after the resume the
update must end as it would have without the kill.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from contract.bundle import load_bundle
from device.updater import State
from device.updater.record import Journal
from tests.device.updater.fakes import (
    FakeInference,
    desire,
    drive,
    knn_variant,
    live_version,
    make_device,
    make_updater,
)
from tests.device.updater.tuf_server import Mirror, TufRepo, add_bundle

RUNNER = Path(__file__).with_name("crash_runner.py")
GOOD = ["save:DOWNLOADING:1", "extract", "save:STAGED:1", "flip:1", "save:SWITCHED:1", "save:PROBATION:1",
        "save:PROBATION:4", "save:COMMITTED:1"]
BAD = ["save:PROBATION:2", "pending", "flip:2", "save:ROLLED_BACK:1"]
# file by file: factory -> v2 fetches all six files; v2 -> 2.0.1 keeps four and fetches two (kNN state, bundle.json)
FILES_FULL = ["fetch:1", "fetch:4", "copy:3", "copy:6", "save:STAGED:1", "flip:2"]  # flip 1: the factory's
FILES_KNN = ["copy:1", "fetch:1", "fetch:2", "copy:4", "copy:6", "save:STAGED:1", "flip:1", "save:PROBATION:1"]


def kill_at(data_dir: Path, mirror: Mirror, kill: str, *extra: str) -> None:
    done = subprocess.run([sys.executable, str(RUNNER), str(data_dir), mirror.url, kill, *extra],
                          capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == -9, f"not killed at {kill}: rc={done.returncode}\n{done.stderr[-2000:]}"


def assert_consistent(data_dir: Path) -> str:
    """The live slot is a whole bundle (every file hash checks out) and the journal is readable."""
    current = data_dir / "models" / "current"
    assert current.is_symlink() and current.readlink().name in ("slot-a", "slot-b")
    bundle = load_bundle(current)
    Journal(data_dir / "state" / "updater.json").load()
    return bundle.version


@pytest.mark.parametrize("kill", GOOD)
def test_power_loss_during_good_update(data_dir: Path, mirror: Mirror, kill: str) -> None:
    desire(data_dir)
    kill_at(data_dir, mirror, kill)
    assert assert_consistent(data_dir) in ("1.0.0", "2.0.0")
    updater = make_updater(data_dir, mirror.url)
    assert drive(updater) is State.COMMITTED
    assert assert_consistent(data_dir) == "2.0.0" and updater.record.live_version == "2.0.0"


@pytest.mark.parametrize("kill", BAD)
def test_power_loss_during_rollback(data_dir: Path, mirror: Mirror, kill: str) -> None:
    desire(data_dir)
    kill_at(data_dir, mirror, kill, "--bad")
    assert assert_consistent(data_dir) in ("1.0.0", "2.0.0")
    health = FakeInference(data_dir / "models", by_version={"2.0.0": {"drift_alarm_rate": 500.0}})
    updater = make_updater(data_dir, mirror.url, health=health)
    assert drive(updater) is State.ROLLED_BACK
    assert assert_consistent(data_dir) == "1.0.0" and live_version(data_dir) == "1.0.0"
    assert updater.slots.live() == "slot-a" and updater.record.live_version == "1.0.0"


def test_power_loss_mid_download_resumes_with_range(data_dir: Path, repo, mirror: Mirror) -> None:  # type: ignore[no-untyped-def]
    url = repo.target_url_path("digits/2.0.0/bundle.tar")
    size = len(repo.files[url])
    mirror.cut_at = [size // 3]

    def refuse_resume(path: str) -> None:  # the first attempt to resume fails: the round ends with a partial
        if mirror.requests[-1][1]:
            mirror.target_status.append(404)

    mirror.on_request = refuse_resume
    desire(data_dir)
    kill_at(data_dir, mirror, "save:DOWNLOADING:2", "--attempts", "1")
    partial = list((data_dir / "tuf" / "downloads" / "partial").glob("*.part"))
    assert len(partial) == 1 and 0 < partial[0].stat().st_size < size
    have = partial[0].stat().st_size
    mirror.requests.clear()
    mirror.on_request = None
    updater = make_updater(data_dir, mirror.url)
    assert drive(updater) is State.COMMITTED
    ranges = [rng for path, rng in mirror.requests if path.startswith("/tuf/targets/")]
    assert ranges == [f"bytes={have}-"]


def cached_downloads(data_dir: Path) -> int:
    """Verified downloads waiting to be placed in a slot (partial ones excluded)."""
    return len([p for p in (data_dir / "tuf" / "downloads").glob("*") if p.is_file()])


def target_requests(mirror: Mirror) -> int:
    return len({path for path, _ in mirror.requests if path.startswith("/tuf/targets/")})


@pytest.mark.parametrize("kill", FILES_FULL)
def test_power_loss_during_a_file_by_file_update(tmp_path: Path, delta_repo: TufRepo, delta_mirror: Mirror,
                                                 kill: str) -> None:
    data_dir = make_device(tmp_path / "data", delta_repo)
    desire(data_dir)
    kill_at(data_dir, delta_mirror, kill)
    assert assert_consistent(data_dir) in ("1.0.0", "2.0.0")
    staged = Journal(data_dir / "state" / "updater.json").load().state not in (State.IDLE, State.DOWNLOADING)
    missing = 0 if staged else 6 - cached_downloads(data_dir)  # once STAGED, the slot holds all six
    delta_mirror.requests.clear()
    updater = make_updater(data_dir, delta_mirror.url)
    assert drive(updater) is State.COMMITTED
    assert assert_consistent(data_dir) == "2.0.0" and updater.record.live_version == "2.0.0"
    assert target_requests(delta_mirror) == missing  # what was downloaded and verified before the cut stays
    assert cached_downloads(data_dir) == 0


@pytest.mark.parametrize("kill", FILES_KNN)
def test_power_loss_during_a_knn_only_update(tmp_path: Path, delta_repo: TufRepo, delta_mirror: Mirror,
                                             kill: str) -> None:
    data_dir = make_device(tmp_path / "data", delta_repo)
    desire(data_dir)
    assert drive(make_updater(data_dir, delta_mirror.url)) is State.COMMITTED
    add_bundle(delta_repo, "digits/2.0.1/bundle.tar", knn_variant(tmp_path, "2.0.1"))
    delta_repo.publish()
    desire(data_dir, target="digits/2.0.1/bundle.tar", version="2.0.1")
    kill_at(data_dir, delta_mirror, kill)
    assert assert_consistent(data_dir) in ("2.0.0", "2.0.1")
    assert load_bundle(data_dir / "models" / "slot-b").version == "2.0.0"  # the slot it came from, intact
    updater = make_updater(data_dir, delta_mirror.url)
    assert drive(updater) is State.COMMITTED
    assert assert_consistent(data_dir) == "2.0.1" and updater.slots.live() == "slot-a"
