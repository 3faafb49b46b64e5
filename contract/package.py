"""The sync package a device uploads (format 1): a tar.gz with `manifest.json` first, `records.jsonl`, `blobs/*`.

The device builds packages with `write_package` and `package_id`; the server validates them against the same
names, kinds and patterns. `FORMAT` is bumped on any incompatible change.

The same members always give the same bytes (tar members have fixed mtimes and owners, gzip mtime is 0), and
a seq range always gets the same id (UUID5 of device and range), so a package rebuilt after a restart is the
one the server may already hold. After a conflict the same range goes again under `<id>.r<attempt>`.
"""

from __future__ import annotations

import gzip
import io
import json
import tarfile
import uuid
from typing import Any

FORMAT = 1
MANIFEST_NAME = "manifest.json"
RECORDS_NAME = "records.jsonl"
BLOBS_DIR = "blobs"
KINDS = ("prediction", "drift_event", "adaptation", "metric", "log", "image")  # what a record may be
PACKAGE_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$"
FILE_NAME_PATTERN = r"^(records\.jsonl|blobs/[A-Za-z0-9][A-Za-z0-9._-]{0,127})$"  # the files a manifest lists
NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "tinymlops:sync-package")


def package_id(device_id: str, seq_first: int, seq_last: int, attempt: int = 0) -> str:
    """The id of the package holding seqs first..last of a device: the same range and attempt, the same id.

    `attempt` counts the times the server held other content under this range's id (integrity incidents);
    each gives the range a fresh id of this device, within `PACKAGE_ID_PATTERN`.
    """
    if attempt < 0:
        raise ValueError(f"attempt must be >= 0, got {attempt}")
    base = str(uuid.uuid5(NAMESPACE, f"{device_id}/{seq_first}-{seq_last}"))
    return f"{base}.r{attempt}" if attempt else base


def write_package(manifest: dict[str, Any], files: list[tuple[str, bytes]]) -> bytes:
    """The deterministic tar.gz of `manifest.json` followed by `files` (name, bytes), in that order."""
    members = [(MANIFEST_NAME, json.dumps(manifest, indent=1).encode()), *files]
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
    """The manifest of a package, unvalidated (for tests and tools; the server validates its own way)."""
    with tarfile.open(fileobj=io.BytesIO(body), mode="r:gz") as tar:
        first = tar.next()
        if first is None or first.name != MANIFEST_NAME:
            raise ValueError(f"{MANIFEST_NAME} is not the first member")
        f = tar.extractfile(first)
        assert f is not None
        return dict(json.loads(f.read()))
