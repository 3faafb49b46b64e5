"""Safe unpacking of an uploaded package into a private work directory.

Never `extractall`: members are streamed one by one through `tarfile.data_filter` and stricter
checks of our own (regular files named in the manifest only), while the decompressed byte count
is enforced below tarfile itself, so pax headers and padding count too.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import tarfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from pydantic import ValidationError

from server.errors import PackageError
from server.package_format import MANIFEST_NAME, RECORDS_NAME, Manifest, ManifestFile, PackageRecord

_MANIFEST_MAX = 1024 * 1024
_CHUNK = 256 * 1024
_TAR_OVERHEAD = 1024  # header + padding per member, allowed on top of the payload limit


@dataclass(frozen=True)
class Limits:
    """Upper bounds for one package; bytes are decompressed bytes."""

    max_bytes: int
    max_members: int


@dataclass(frozen=True)
class UnpackedPackage:
    """A verified package: its manifest, its parsed records, and where its blobs were written."""

    manifest: Manifest
    records: list[PackageRecord]
    root: Path

    def blob_path(self, name: str) -> Path:
        """The file of a blob the manifest lists (`blobs/<name>`)."""
        return self.root / name


class _Readable(Protocol):
    def read(self, size: int = -1, /) -> bytes: ...


class _LimitedReader:
    """Reads decompressed bytes and fails once more than `limit` came out (decompression bombs)."""

    def __init__(self, raw: _Readable, limit: int) -> None:
        self._raw = raw
        self._left = limit

    def read(self, size: int = -1) -> bytes:
        data = self._raw.read(size if size >= 0 else _CHUNK)
        self._left -= len(data)
        if self._left < 0:
            raise PackageError("package expands beyond the size limit (decompression bomb?)")
        return data


def unpack(archive: Path, workdir: Path, limits: Limits, device_id: str, package_id: str) -> UnpackedPackage:
    """Verify and unpack `archive` into `workdir`; raises `PackageError` for anything off."""
    budget = limits.max_bytes + _TAR_OVERHEAD * (limits.max_members + 2)
    try:
        with gzip.open(archive, "rb") as raw:
            stream = _LimitedReader(raw, budget)
            with tarfile.open(fileobj=stream, mode="r|") as tar:  # type: ignore[call-overload]
                manifest = _extract_members(tar, workdir, limits)
    except (tarfile.TarError, gzip.BadGzipFile, zlib.error, EOFError, UnicodeError) as exc:
        raise PackageError(f"not a valid tar.gz: {exc}", package_id) from exc
    if manifest.package_id != package_id:
        raise PackageError(f"manifest names package {manifest.package_id!r}", package_id)
    if manifest.device_id != device_id:
        raise PackageError(f"manifest names device {manifest.device_id!r}, uploaded by {device_id!r}", package_id)
    records = _parse_records(workdir / RECORDS_NAME, manifest)
    return UnpackedPackage(manifest, records, workdir)


def _extract_members(tar: tarfile.TarFile, workdir: Path, limits: Limits) -> Manifest:
    manifest: Manifest | None = None
    expected: dict[str, ManifestFile] = {}
    total = 0
    for count, member in enumerate(tar, start=1):
        if count > limits.max_members:
            raise PackageError(f"more than {limits.max_members} members")
        _check_member(member, workdir)
        if member.isdir():
            if member.name.rstrip("/") != "blobs":
                raise PackageError(f"unexpected directory {member.name!r}")
            continue
        total += member.size
        if total > limits.max_bytes:
            raise PackageError(f"members exceed {limits.max_bytes} bytes")
        if manifest is None:
            manifest = _read_manifest(tar, member)
            expected = {f.name: f for f in manifest.files}
            continue
        listed = expected.pop(member.name, None)
        if listed is None:
            raise PackageError(f"{member.name!r} is not listed in the manifest (or appears twice)")
        _copy_verified(tar, member, listed, workdir)
    if manifest is None:
        raise PackageError("empty archive")
    if expected:
        raise PackageError(f"files listed but missing: {sorted(expected)}")
    return manifest


def _check_member(member: tarfile.TarInfo, workdir: Path) -> None:
    try:
        tarfile.data_filter(member, str(workdir))
    except tarfile.FilterError as exc:
        raise PackageError(f"unsafe member {member.name!r}: {exc}") from exc
    if not (member.isfile() or member.isdir()):
        raise PackageError(f"member {member.name!r} is not a regular file")
    parts = member.name.split("/")
    if member.name.startswith("/") or ".." in parts or "\\" in member.name:
        raise PackageError(f"unsafe member name {member.name!r}")


def _read_manifest(tar: tarfile.TarFile, member: tarfile.TarInfo) -> Manifest:
    if member.name != MANIFEST_NAME or not member.isfile():
        raise PackageError(f"the first member must be {MANIFEST_NAME}, not {member.name!r}")
    if member.size > _MANIFEST_MAX:
        raise PackageError("manifest.json is too large")
    source = tar.extractfile(member)
    assert source is not None
    try:
        return Manifest.model_validate(json.loads(source.read()))
    except (ValueError, ValidationError) as exc:
        raise PackageError(f"invalid manifest.json: {_first_line(exc)}") from exc


def _copy_verified(tar: tarfile.TarFile, member: tarfile.TarInfo, listed: ManifestFile, workdir: Path) -> None:
    if member.size != listed.size:
        raise PackageError(f"{member.name!r} is {member.size} bytes, manifest says {listed.size}")
    source = tar.extractfile(member)
    assert source is not None
    target = workdir / member.name
    target.parent.mkdir(parents=True, exist_ok=True)
    digest = hashlib.sha256()
    written = 0
    with target.open("xb") as out:
        while chunk := source.read(_CHUNK):
            written += len(chunk)
            if written > listed.size:
                raise PackageError(f"{member.name!r} is longer than declared")
            digest.update(chunk)
            out.write(chunk)
    if written != listed.size or digest.hexdigest() != listed.sha256:
        raise PackageError(f"{member.name!r} does not match its manifest sha256/size")


def _parse_records(path: Path, manifest: Manifest) -> list[PackageRecord]:
    blobs = {f.name for f in manifest.files if f.kind == "blob"}
    records: list[PackageRecord] = []
    seen: set[int] = set()
    with path.open("rb") as lines:
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            try:
                record = PackageRecord.model_validate(json.loads(line, parse_constant=_no_constant))
            except (ValueError, ValidationError) as exc:
                raise PackageError(f"records.jsonl line {number}: {_first_line(exc)}") from exc
            if not manifest.seq_first <= record.seq <= manifest.seq_last or record.seq in seen:
                raise PackageError(f"records.jsonl line {number}: seq {record.seq} outside range or repeated")
            if record.blob is not None and record.blob not in blobs:
                raise PackageError(f"records.jsonl line {number}: blob {record.blob!r} not in the manifest")
            seen.add(record.seq)
            records.append(record)
    if len(records) != manifest.record_count:
        raise PackageError(f"{len(records)} records, manifest says {manifest.record_count}")
    return records


def _no_constant(name: str) -> None:
    """NaN and ±Infinity (Python's json writes them) become null: JSON columns cannot hold them."""
    return None


def _first_line(exc: Exception) -> str:
    text = str(exc).strip()
    return " ".join(text.splitlines()[:3])[:300]
