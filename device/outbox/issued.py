"""`IssuedMark`: the highest seq the outbox has handed out, in a small memory-mapped file beside the database.

A store into the mapping lands in the kernel's page cache at once, so it outlives the process (kill -9,
out of memory, a watchdog) without an fsync or a write per record; only a reboot can lose what the kernel
had not written back yet. The boot id kept beside the seq tells a restart which of the two it follows.
"""

from __future__ import annotations

import logging
import mmap
import os
import struct
import uuid
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)
_BOOT_ID = Path("/proc/sys/kernel/random/boot_id")
_LAYOUT = struct.Struct("<16sQQ")  # boot id, seq, seq ^ _CHECK
_SEQ = struct.Struct("<QQ")
_SEQ_OFFSET = 16
_CHECK = 0x9E3779B97F4A7C15  # a store torn by the kill leaves seq and check disagreeing
UNKNOWN_BOOT = bytes(16)


def boot_id() -> bytes:
    """This boot's id (16 bytes); zeros where the kernel does not tell it (no restart then counts as this boot)."""
    try:
        return uuid.UUID(_BOOT_ID.read_text().strip()).bytes
    except (OSError, ValueError):
        return UNKNOWN_BOOT


@dataclass(frozen=True)
class Mark:
    """What a previous process left: the highest seq it handed out, and whether it ran in this boot."""

    seq: int
    same_boot: bool


def read_mark(path: Path, boot: bytes) -> Mark | None:
    """The mark at `path`, or None when there is none or it is unreadable (absent, short, torn)."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as exc:
        log.warning("cannot read the issued-seq mark %s: %s", path, exc)
        return None
    if len(raw) < _LAYOUT.size:
        return None
    found_boot, seq, check = _LAYOUT.unpack_from(raw)
    if seq ^ _CHECK != check:
        log.warning("the issued-seq mark %s is torn; it is not used", path)
        return None
    return Mark(seq, found_boot == boot and boot != UNKNOWN_BOOT)


class IssuedMark:
    """The mapping a running outbox stores each handed-out seq into (under the intake's lock)."""

    def __init__(self, path: Path, boot: bytes, seq: int) -> None:
        self.path = path
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            os.ftruncate(fd, _LAYOUT.size)
            self._map = mmap.mmap(fd, _LAYOUT.size)
        finally:
            os.close(fd)
        _LAYOUT.pack_into(self._map, 0, boot, seq, seq ^ _CHECK)

    def set(self, seq: int) -> None:
        """Record that `seq` was handed out: a memory store, no system call."""
        _SEQ.pack_into(self._map, _SEQ_OFFSET, seq, seq ^ _CHECK)

    def close(self) -> None:
        self._map.close()
