"""Sync packages: records -> a deterministic tar.gz with `manifest.json` first (package format 1).

The same seq range always gives the same bytes (ids are UUID5 of device and range, tar members have
fixed mtimes and owners, gzip mtime is 0), so a package rebuilt after a restart is the one the server
may already hold. After a conflict the same range goes again under a fresh id, `<id>.r<attempt>`.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import tarfile
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from device.outbox.records import Record
from device.sync.images import fit_image

FORMAT = 1
NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "tinymlops:sync-package")
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


def package_id(device_id: str, seq_first: int, seq_last: int, attempt: int = 0) -> str:
    """The id of the package holding seqs first..last of a device: the same range and attempt, the same id.

    `attempt` counts the times the server held other content under this range's id (integrity incidents);
    each gives the range a fresh id of this device, within the server's id pattern.
    """
    if attempt < 0:
        raise ValueError(f"attempt must be >= 0, got {attempt}")
    base = str(uuid.uuid5(NAMESPACE, f"{device_id}/{seq_first}-{seq_last}"))
    return f"{base}.r{attempt}" if attempt else base


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
            name = f"blobs/{r.blob.rsplit('.', 1)[0]}.{ext}"
            files.append((name, data, "blob"))
        line = {"seq": r.seq, "kind": r.kind, "ts": r.ts, "priority": r.priority, "data": json.loads(r.data),
                "blob": name}
        lines.append(json.dumps(line, separators=(",", ":"), ensure_ascii=False))
    files.insert(0, ("records.jsonl", ("\n".join(lines) + "\n").encode(), "records"))
    first, last = records[0].seq, records[-1].seq
    pid = package_id(device_id, first, last, attempt)
    manifest = {
        "format": FORMAT, "package_id": pid, "device_id": device_id,
        "seq_first": first, "seq_last": last, "record_count": len(records), "created": records[-1].ts,
        "files": [{"name": n, "sha256": hashlib.sha256(d).hexdigest(), "size": len(d), "kind": k} for n, d, k in files],
    }
    body = _tar_gz([("manifest.json", json.dumps(manifest, indent=1).encode())] + [(n, d) for n, d, _ in files])
    return Package(pid, device_id, first, last, len(records), body,
                   hashlib.sha256(body).hexdigest())


def _tar_gz(members: list[tuple[str, bytes]]) -> bytes:
    raw = io.BytesIO()
    with (
        gzip.GzipFile(fileobj=raw, mode="wb", mtime=0, compresslevel=6) as gz,  # no file name, no time
        tarfile.open(fileobj=gz, mode="w", format=tarfile.USTAR_FORMAT) as tar,
    ):
        for name, data in members:
            tar.addfile(_member(name, len(data)), io.BytesIO(data))
    return raw.getvalue()


def _member(name: str, size: int) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.size, info.mtime, info.mode = size, 0, 0o644
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    return info


def read_manifest(body: bytes) -> dict[str, Any]:
    """The manifest of a package (for tests and tools)."""
    with tarfile.open(fileobj=io.BytesIO(body), mode="r:gz") as tar:
        first = tar.next()
        if first is None or first.name != "manifest.json":
            raise ValueError("manifest.json is not the first member")
        f = tar.extractfile(first)
        assert f is not None
        return dict(json.loads(f.read()))
