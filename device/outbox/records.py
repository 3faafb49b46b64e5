"""What the outbox holds: record kinds, their priorities, and the two shapes a record takes.

An `Entry` is a record on its way in (queued, blob bytes in memory); a `Record` is one read back
from SQLite for packing (blob by name, bytes beside the database).
"""

from __future__ import annotations

from dataclasses import dataclass

from contract.package import KINDS

__all__ = ["KINDS", "PRIORITY", "Entry", "Record"]
# Higher survives longer: eviction and queue overflow take the lowest priority first.
PRIORITY = {"prediction": 0, "metric": 1, "log": 1, "image": 1, "adaptation": 2, "drift_event": 3}
PROTECTED_PRIORITY = 2  # records at or above this may overflow the queue bound into its headroom
ROW_OVERHEAD = 64  # bytes a row costs beyond its payload (page/index share), for the disk bound


@dataclass(frozen=True, slots=True)
class Entry:
    """A record accepted by `Outbox.append`, not yet committed."""

    seq: int
    kind: str
    ts: str
    priority: int
    data: str  # compact JSON
    blob: bytes | None = None
    blob_ext: str = "jpg"

    @property
    def blob_name(self) -> str | None:
        return f"{self.seq:012d}.{self.blob_ext}" if self.blob is not None else None

    @property
    def size(self) -> int:
        """Bytes this record costs on disk (payload, blob, row overhead)."""
        return ROW_OVERHEAD + len(self.data) + (len(self.blob) if self.blob is not None else 0)


@dataclass(frozen=True, slots=True)
class Record:
    """A committed record, as the packer reads it."""

    seq: int
    kind: str
    ts: str
    priority: int
    data: str  # compact JSON, as appended
    blob: str | None  # file name beside the database
    size: int
