"""Blob files of the outbox: one file per record, written atomically beside the database."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable
from pathlib import Path

log = logging.getLogger(__name__)


class BlobDir:
    """The directory of blob files; names come from `Entry.blob_name` (the record's seq)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.path.mkdir(parents=True, exist_ok=True)

    def write_many(self, blobs: Iterable[tuple[str, bytes]]) -> list[str]:
        """Write blobs atomically with one directory fsync for all; the names written (failures logged)."""
        written = []
        for name, data in blobs:
            tmp = self.path / f".{name}.tmp"
            try:
                with open(tmp, "wb") as f:
                    f.write(data)
                    f.flush()
                    os.fsync(f.fileno())
                os.replace(tmp, self.path / name)
            except OSError as exc:
                tmp.unlink(missing_ok=True)
                log.warning("blob %s not written: %s", name, exc)
                continue
            written.append(name)
        if written:
            fd = os.open(self.path, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        return written

    def read(self, name: str) -> bytes:
        return (self.path / name).read_bytes()

    def remove(self, names: Iterable[str]) -> None:
        for name in names:
            (self.path / name).unlink(missing_ok=True)

    def total_bytes(self) -> int:
        return sum(p.stat().st_size for p in self.path.iterdir() if p.is_file())

    def remove_orphans(self, referenced: set[str]) -> int:
        """Delete blobs no record refers to (written just before a crash) and temp leftovers."""
        removed = 0
        for path in self.path.iterdir():
            if path.name not in referenced:
                log.info("removing orphaned blob %s", path.name)
                path.unlink(missing_ok=True)
                removed += 1
        return removed
