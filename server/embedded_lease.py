"""Who uses the embedded PostgreSQL, so that it runs exactly as long as some process does.

Every process using it holds a shared `flock` on `postgres.users` in the data directory; the kernel
drops that lock when the process ends, however it ends, so a SIGKILLed server stops counting at once.
Joining, leaving and stopping happen under an exclusive `postgres.guard`. The last process to leave
stops PostgreSQL, and one reaper per data directory (`python -m server.embedded_lease`, standard
library only) stops it when the last user died without leaving.
"""

from __future__ import annotations

import argparse
import fcntl
import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

logger = logging.getLogger(__name__)
USERS = "postgres.users"
GUARD = "postgres.guard"
REAPER = "postgres.reaper"
REAPER_LOG = "postgres.reaper.log"
_STOP_TIMEOUT_S = 120


@dataclass(frozen=True)
class Control:
    """The PostgreSQL server of one PGDATA, found through its `postmaster.pid`."""

    pgdata: Path

    def postmaster(self) -> int | None:
        """The pid of the server running on this PGDATA, or None."""
        try:
            pid = int((self.pgdata / "postmaster.pid").read_text().split("\n", 1)[0])
        except (OSError, ValueError):
            return None
        if not _running(pid):
            return None
        try:  # a stale file may name a pid the system gave to another program since
            if str(self.pgdata) not in Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace"):
                return None
        except FileNotFoundError:  # no /proc: trust the file, as pg_ctl does
            pass
        return pid

    def stop(self, timeout_s: float = _STOP_TIMEOUT_S) -> None:
        """Fast shutdown, as `pg_ctl stop -m fast` does it: SIGINT, then wait for the server to finish.

        Signalled directly rather than through pg_ctl, which runs as the server's system user and
        fails when that user cannot reach the data directory any more.
        """
        pid = self.postmaster()
        if pid is None:
            return
        os.kill(pid, signal.SIGINT)
        deadline = time.monotonic() + timeout_s
        while _running(pid) and (self.pgdata / "postmaster.pid").exists():
            if time.monotonic() > deadline:
                logger.error("embedded PostgreSQL (pid %d) did not stop within %.0f s", pid, timeout_s)
                return
            time.sleep(0.1)
        logger.info("stopped the embedded PostgreSQL in %s", self.pgdata)


def _running(pid: int) -> bool:
    """True while `pid` exists and is not a zombie (a daemon's parent may never reap it)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return True
    return state not in ("Z", "X")


def _open(path: Path) -> int:
    return os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)


def _try_lock(path: Path, mode: int) -> int | None:
    """An fd holding `mode` (without waiting) on `path`, or None when another holder conflicts."""
    fd = _open(path)
    try:
        fcntl.flock(fd, mode | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    return fd


class Lease:
    """This process's use of the embedded PostgreSQL under `data_dir`."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self._users_fd: int | None = None

    @contextmanager
    def guard(self) -> Iterator[None]:
        """Exclusive against every other join, leave and reap on this data directory."""
        fd = _open(self.data_dir / GUARD)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)

    def join(self) -> None:
        """Count this process as a user (call under `guard`, before starting PostgreSQL)."""
        if self._users_fd is None:
            fd = _open(self.data_dir / USERS)
            fcntl.flock(fd, fcntl.LOCK_SH)  # never waits: exclusive holders also hold the guard
            self._users_fd = fd

    def drop(self) -> None:
        """Stop counting this process and leave PostgreSQL as it is (call under `guard`)."""
        if self._users_fd is not None:
            os.close(self._users_fd)
            self._users_fd = None

    def leave(self, control: Control) -> None:
        """Stop counting this process; the last user out stops PostgreSQL."""
        if self._users_fd is None:
            return
        with self.guard():
            self.drop()
            stop_if_unused(self.data_dir, control)

    def ensure_reaper(self, control: Control) -> None:
        """Start the reaper of this data directory unless one runs (call under `guard`)."""
        fd = _try_lock(self.data_dir / REAPER, fcntl.LOCK_EX)
        if fd is None:
            return
        # The child inherits this very lock, so no second reaper can start while it lives.
        argv = [sys.executable, "-m", "server.embedded_lease", str(self.data_dir), str(control.pgdata),
                "--lock-fd", str(fd)]
        try:
            with (self.data_dir / REAPER_LOG).open("ab") as log:
                subprocess.Popen(argv, pass_fds=(fd,), start_new_session=True, stdin=subprocess.DEVNULL,
                                 stdout=log, stderr=log)
        finally:
            os.close(fd)


def stop_if_unused(data_dir: Path, control: Control) -> bool:
    """Stop PostgreSQL when no process counts as a user (call under the guard); True if it was unused."""
    fd = _try_lock(data_dir / USERS, fcntl.LOCK_EX)
    if fd is None:
        return False
    try:
        control.stop()
    finally:
        os.close(fd)
    return True


def reap(data_dir: Path, control: Control, lock_fd: int, interval_s: float = 1.0) -> None:
    """Wait until no user is left, then stop PostgreSQL; gives up when the data directory is gone."""
    while control.pgdata.is_dir():
        time.sleep(interval_s)
        guard = _try_lock(data_dir / GUARD, fcntl.LOCK_EX)
        if guard is None:
            continue  # someone joins or leaves right now: look again later
        try:
            if stop_if_unused(data_dir, control):
                os.close(lock_fd)  # before the guard: whoever starts next must start a new reaper
                return
        finally:
            os.close(guard)


def main(argv: list[str] | None = None) -> int:
    """The reaper process: `python -m server.embedded_lease DATA_DIR PGDATA --lock-fd N`."""
    parser = argparse.ArgumentParser(prog="python -m server.embedded_lease", description=reap.__doc__)
    parser.add_argument("data_dir", type=Path)
    parser.add_argument("pgdata", type=Path)
    parser.add_argument("--lock-fd", type=int, required=True)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s reaper: %(message)s")
    for signum in (signal.SIGINT, signal.SIGHUP):  # a closing terminal must not leave the database behind
        signal.signal(signum, signal.SIG_IGN)
    reap(args.data_dir, Control(args.pgdata), args.lock_fd)
    return 0


if __name__ == "__main__":
    sys.exit(main())
