"""Sync packages: outbox records -> the tar.gz of `contract.package` (format 1), within the size limits.

Ids and bytes are deterministic (see `contract.package`), so a package rebuilt after a restart is the one the
server may already hold.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from contract.package import BLOBS_DIR, FORMAT, RECORDS_NAME, package_id, write_package
from device.outbox.records import Record
from device.sync.images import fit_image

_TAR_BLOCK = 512


@dataclass(frozen=True)
class Package:
    """One built package: its id, seq range and bytes (with their SHA-256)."""

    package_id: str
    device_id: str
    seq_first: int
    seq_last: int
    record_count: int
    body: bytes
    sha256: str

    @property
    def range(self) -> tuple[int, int]:
        return self.seq_first, self.seq_last


@dataclass(frozen=True)
class ImagePolicy:
    max_side: int = 128  # pixels; larger images are downscaled
    jpeg_quality: int = 80


def estimate(record: Record) -> int:
    """Conservative bytes one record adds to a package (JSON shrinks ~3x in gzip, blobs do not)."""
    blob = record.size - len(record.data) if record.blob else 0
    return (len(record.data) + 120) // 3 + (blob + 2 * _TAR_BLOCK if record.blob else 0)


def plan(records: Sequence[Record], max_bytes: int, max_files: int) -> int:
    """How many of `records` (from the first) go into the next package; at least one."""
    total, files = 3 * _TAR_BLOCK, 1
    for n, record in enumerate(records):
        total += estimate(record)
        files += 1 if record.blob else 0
        if n and (total > max_bytes or files > max_files):
            return n
    return len(records)


def build(device_id: str, records: Sequence[Record], blob: Callable[[str], bytes | None],
          images: ImagePolicy, attempt: int = 0) -> Package:
    """The package of `records` (sorted by seq, not empty); `blob(name)` reads a blob file (None: it is gone)."""
    lines, files = [], []
    for r in records:
        name = None
        raw = blob(r.blob) if r.blob else None
        if r.blob and raw is not None:
            data, ext = fit_image(raw, r.blob.rsplit(".", 1)[-1], images.max_side, images.jpeg_quality)
            name = f"{BLOBS_DIR}/{r.blob.rsplit('.', 1)[0]}.{ext}"
            files.append((name, data, "blob"))
        line = {"seq": r.seq, "kind": r.kind, "ts": r.ts, "priority": r.priority, "data": json.loads(r.data),
                "blob": name}
        lines.append(json.dumps(line, separators=(",", ":"), ensure_ascii=False))
    files.insert(0, (RECORDS_NAME, ("\n".join(lines) + "\n").encode(), "records"))
    first, last = records[0].seq, records[-1].seq
    pid = package_id(device_id, first, last, attempt)
    manifest = {
        "format": FORMAT, "package_id": pid, "device_id": device_id,
        "seq_first": first, "seq_last": last, "record_count": len(records), "created": records[-1].ts,
        "files": [{"name": n, "sha256": hashlib.sha256(d).hexdigest(), "size": len(d), "kind": k} for n, d, k in files],
    }
    body = write_package(manifest, [(n, d) for n, d, _ in files])
    return Package(pid, device_id, first, last, len(records), body,
                   hashlib.sha256(body).hexdigest())
