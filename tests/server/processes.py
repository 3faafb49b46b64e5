"""Finding the processes of an embedded PostgreSQL (postmaster and reaper) through /proc, and waiting on them."""

from __future__ import annotations

from pathlib import Path


def _cmdlines() -> dict[int, list[str]]:
    found = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                raw = (entry / "cmdline").read_bytes()
            except OSError:  # ended meanwhile
                continue
            found[int(entry.name)] = raw.decode(errors="replace").split("\0")
    return found


def postmasters(pgdata: Path) -> list[int]:
    """Pids of PostgreSQL servers running on `pgdata`."""
    return [pid for pid, argv in _cmdlines().items()
            if argv[0].endswith("/postgres") and str(pgdata.resolve()) in argv]


def reapers(data_dir: Path) -> list[int]:
    """Pids of the reaper processes watching `data_dir`."""
    return [pid for pid, argv in _cmdlines().items()
            if "server.embedded_lease" in argv and str(data_dir.resolve()) in argv]

