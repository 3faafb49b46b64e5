"""The embedded PostgreSQL runs exactly as long as a process uses it, however those processes end.

Real processes on a real embedded PostgreSQL: each user is `python -c` calling `embedded.start`, ended
by SIGTERM (a clean exit) or SIGKILL (nothing runs).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from tests.server.processes import postmasters, reapers
from tests.utils.wait import wait_until

pytestmark = pytest.mark.slow

_USER = """
import signal, sys, time
from pathlib import Path
from server import embedded
signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
print(embedded.start(Path(sys.argv[1])).database_url, flush=True)
time.sleep(3600)
"""


class User:
    """A process using the embedded PostgreSQL of `data_dir`."""

    def __init__(self, data_dir: Path) -> None:
        self.process = subprocess.Popen([sys.executable, "-c", _USER, str(data_dir)], stdout=subprocess.PIPE,
                                        text=True, cwd=Path(__file__).resolve().parents[2])
        assert self.process.stdout is not None
        self.database_url = self.process.stdout.readline().strip()
        assert self.database_url.startswith("postgresql://"), f"user exited with {self.process.wait()}"

    def query(self) -> int:
        with psycopg.connect(self.database_url, connect_timeout=5) as conn:
            row = conn.execute("SELECT 1").fetchone()
        return int(row[0]) if row else 0

    def end(self, signum: signal.Signals) -> None:
        self.process.send_signal(signum)
        self.process.wait(timeout=60)


@pytest.fixture
def data_dir() -> Iterator[Path]:
    """A data directory; whatever a failed test left running on it is ended afterwards.

    Not under pytest's basetemp: each new pytest session on the machine makes that private (0700) again,
    which shuts the embedded PostgreSQL's system user out of its own files while it runs.
    """
    root = Path(tempfile.mkdtemp(prefix="tinysphere-embedded-"))
    path = root / "data"
    yield path
    for pid in _users_of(path):
        os.kill(pid, signal.SIGKILL)
    try:
        wait_until(lambda: not postmasters(path / "postgres"), 30, "the reaper to stop PostgreSQL", interval=0.2)
    finally:
        for pid in postmasters(path / "postgres") + reapers(path):
            os.kill(pid, signal.SIGTERM)
        shutil.rmtree(root, ignore_errors=True)


def _users_of(data_dir: Path) -> list[int]:
    return [pid for pid in _children() if str(data_dir) in Path(f"/proc/{pid}/cmdline").read_text()]


def _children() -> list[int]:
    """Pids of this process's children still running."""
    own = str(os.getpid())
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if fields[1] == own and fields[0] != "Z":
            found.append(int(stat.parent.name))
    return found


def test_the_last_user_out_stops_it_though_another_was_killed(data_dir: Path) -> None:
    first, second = User(data_dir), User(data_dir)
    first.end(signal.SIGKILL)
    assert second.query() == 1
    assert len(postmasters(data_dir / "postgres")) == 1
    second.end(signal.SIGTERM)
    assert postmasters(data_dir / "postgres") == []  # at once: the last user stops it before exiting
    assert not (data_dir / "postgres" / "postmaster.pid").exists()
    wait_until(lambda: not reapers(data_dir), 30, "the reaper to exit", interval=0.2)


def test_a_user_leaving_keeps_it_for_the_others(data_dir: Path) -> None:
    first, second = User(data_dir), User(data_dir)
    first.end(signal.SIGTERM)
    assert second.query() == 1
    assert len(reapers(data_dir)) == 1
    third = User(data_dir)
    second.end(signal.SIGKILL)
    assert third.query() == 1
    third.end(signal.SIGTERM)
    assert postmasters(data_dir / "postgres") == []


def test_a_killed_last_user_takes_it_along(data_dir: Path) -> None:
    User(data_dir).end(signal.SIGKILL)
    wait_until(lambda: not postmasters(data_dir / "postgres"), 30, "the reaper to stop PostgreSQL", interval=0.2)
    wait_until(lambda: not reapers(data_dir), 30, "the reaper to exit", interval=0.2)
    again = User(data_dir)  # and it starts again on the same data
    assert again.query() == 1
    again.end(signal.SIGTERM)
    assert postmasters(data_dir / "postgres") == []
