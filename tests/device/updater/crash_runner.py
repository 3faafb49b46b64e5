"""Runs one update in its own process and SIGKILLs itself at a chosen point (power loss), for test_crash.py.

usage: python crash_runner.py DATA_DIR SERVER_URL KILL [--bad] [--attempts N]
KILL: save:STATE:N (after the Nth save in STATE), pending (after the rollback decision is saved),
      flip:N (right after the Nth symlink flip), extract (after 3 tar members are written),
      fetch:N (after the Nth file target is downloaded and verified), copy:N (after the Nth file is
      placed in the slot being assembled, kept or fetched).
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import tarfile
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[3]))

from device.updater import assembly  # noqa: E402
from device.updater.record import Journal, UpdateRecord  # noqa: E402
from device.updater.repository import BundleRepository  # noqa: E402
from device.updater.slots import Slots  # noqa: E402
from tests.device.updater.fakes import FakeInference, drive, make_updater, settings_for  # noqa: E402

BAD = {"2.0.0": {"drift_alarm_rate": 500.0}}


def die() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def arm(kill: str) -> None:
    kind, _, rest = kill.partition(":")
    seen = {"n": 0}
    if kind in ("save", "pending"):
        state, _, nth = rest.partition(":")
        original_save = Journal.save

        def save(self: Journal, record: UpdateRecord) -> None:
            original_save(self, record)
            hit = record.pending == "rollback" if kind == "pending" else str(record.state) == state
            if hit:
                seen["n"] += 1
                if seen["n"] == int(nth or 1):
                    die()

        Journal.save = save  # type: ignore[method-assign]
    elif kind == "flip":
        original_flip = Slots.flip

        def flip(self: Slots, slot: str) -> None:
            original_flip(self, slot)
            seen["n"] += 1
            if seen["n"] == int(rest):
                die()

        Slots.flip = flip  # type: ignore[method-assign]
    elif kind == "extract":
        original_extract = tarfile.TarFile.extract

        def extract(self: tarfile.TarFile, *args: Any, **kwargs: Any) -> None:
            original_extract(self, *args, **kwargs)
            seen["n"] += 1
            if seen["n"] == 3:
                die()

        tarfile.TarFile.extract = extract  # type: ignore[method-assign]
    elif kind == "fetch":
        original_fetch = BundleRepository.fetch_file

        def fetch_file(self: BundleRepository, entry: Any) -> Path:
            path = original_fetch(self, entry)
            seen["n"] += 1
            if seen["n"] == int(rest):
                die()
            return path

        BundleRepository.fetch_file = fetch_file  # type: ignore[method-assign]
    elif kind == "copy":
        original_copy = assembly.copy_verified

        def copy_verified(source: Path, dest: Path, entry: Any) -> bool:
            placed = original_copy(source, dest, entry)
            if placed:
                seen["n"] += 1
                if seen["n"] == int(rest):
                    die()
            return placed

        assembly.copy_verified = copy_verified  # type: ignore[assignment]


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("data_dir", type=Path)
    parser.add_argument("server_url")
    parser.add_argument("kill")
    parser.add_argument("--bad", action="store_true")
    parser.add_argument("--attempts", type=int, default=3)
    args = parser.parse_args()
    arm(args.kill)
    health = FakeInference(args.data_dir / "models", by_version=BAD if args.bad else {})
    settings = settings_for(args.data_dir, args.server_url, download_attempts=args.attempts)
    updater = make_updater(args.data_dir, args.server_url, health=health, settings=settings)
    drive(updater, max_steps=60)
    return 0  # not killed: the test fails on this


if __name__ == "__main__":
    sys.exit(main())
