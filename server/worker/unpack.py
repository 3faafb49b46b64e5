"""Safe unpacking of an uploaded package into a private work directory.

Never `extractall`: members are streamed one by one through `tarfile.data_filter` and stricter
checks of our own (regular files named in the manifest only). Memory follows what was read, never
what a header declares: every decompressed byte is counted below tarfile itself, and what tarfile
reads on its own between two members (headers, pax and long-name records) has a small budget, so a
few kilobytes claiming gigabytes are refused after at most `_HEADER_READ_MAX` bytes.

Bound per job: the archive takes about 1 MiB whatever it claims (copy chunk, tarfile's buffers, one
member's headers, a manifest of at most 1 MiB; `tests/server/worker/test_unpack.py` measures it), blobs stream
to files, and the parsed records of `records.jsonl` (at most `Limits.max_records_bytes`) come on top:
a whole import job peaks at ~80 MiB with device records at that cap, ~140 MiB with JSON crafted for the
most objects per byte (`python -m benchmarks.worker_memory`).
"""

from __future__ import annotations

import gzip
import hashlib
import json
import tarfile
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, Self

from pydantic import ValidationError

from server.errors import PackageError
from server.package_format import MANIFEST_NAME, RECORDS_NAME, Manifest, ManifestFile, PackageRecord

_MANIFEST_MAX = 1024 * 1024
_CHUNK = 256 * 1024
_TAR_OVERHEAD = 1024  # header + padding per member, allowed on top of the payload limit
# Content of one pax or GNU long-name header. Our names are at most 134 characters, so a real one is a
# few hundred bytes; the bound also keeps Python 3.11's quadratic pax parsing (CVE-2024-6232) cheap.
_HEADER_MAX = 1024
# what tarfile may read between two members: their headers plus its 10 KiB read-ahead
_HEADER_READ_MAX = 64 * 1024
_EXTENDED_HEADERS = (tarfile.XHDTYPE, tarfile.SOLARIS_XHDTYPE, tarfile.GNUTYPE_LONGNAME, tarfile.GNUTYPE_LONGLINK)
# tarfile accumulates global pax headers for the rest of the archive; old GNU sparse members read their map
_REFUSED_HEADERS = {tarfile.XGLTYPE: "a global pax header", tarfile.GNUTYPE_SPARSE: "a sparse file"}


@dataclass(frozen=True)
class Limits:
    """Upper bounds for one package; bytes are decompressed bytes."""

    max_bytes: int
    max_members: int
    # records.jsonl is parsed in memory (about 6x its size for device records, up to 25x for JSON made
    # of empty containers); a device's default 1 MiB package carries at most about 4 MiB of it
    max_records_bytes: int = 8 * 1024 * 1024


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


class _MeteredStream:
    """Decompressed bytes for tarfile, counted as they are read.

    Every byte counts against the package's `budget` (decompression bombs); bytes read outside
    `payload()` (tar headers, which tarfile holds in memory whole) also count against a per-member
    header budget, reset by `next_member()`.
    """

    def __init__(self, raw: _Readable, budget: int) -> None:
        self._raw = raw
        self._left = budget
        self._header_left = _HEADER_READ_MAX
        self._in_payload = False

    def read(self, size: int = -1) -> bytes:
        data = self._raw.read(min(size, _CHUNK) if size >= 0 else _CHUNK)  # never more than a chunk at once
        self._left -= len(data)
        if self._left < 0:
            raise PackageError("package expands beyond the size limit (decompression bomb?)")
        if not self._in_payload:
            self._header_left -= len(data)
            if self._header_left < 0:
                raise PackageError(f"tar headers of one member exceed {_HEADER_READ_MAX} bytes")
        return data

    def next_member(self) -> None:
        """A member was handed over: the next one's headers get a fresh budget."""
        self._header_left = _HEADER_READ_MAX

    @contextmanager
    def payload(self) -> Iterator[None]:
        """Reads in this block are a member's content, bounded by its size and our copy loop."""
        self._in_payload = True
        try:
            yield
        finally:
            self._in_payload = False


class _CheckedTarInfo(tarfile.TarInfo):
    """Refuses, from the 512-byte header block alone, members tarfile would read whole into memory."""

    @classmethod
    def frombuf(cls, buf: bytes | bytearray, encoding: str, errors: str) -> Self:
        info = super().frombuf(buf, encoding, errors)
        if info.type in _EXTENDED_HEADERS and info.size > _HEADER_MAX:
            raise PackageError(f"a tar header declares {info.size} bytes of extended header (limit {_HEADER_MAX})")
        if info.type in _REFUSED_HEADERS:
            raise PackageError(f"member {info.name!r} is {_REFUSED_HEADERS[info.type]}")
        return info


def unpack(archive: Path, workdir: Path, limits: Limits, device_id: str, package_id: str) -> UnpackedPackage:
    """Verify and unpack `archive` into `workdir`; raises `PackageError` for anything off."""
    budget = limits.max_bytes + _TAR_OVERHEAD * (limits.max_members + 2)
    try:
        with gzip.open(archive, "rb") as raw:
            stream = _MeteredStream(raw, budget)
            with tarfile.open(fileobj=stream, mode="r|", tarinfo=_CheckedTarInfo) as tar:  # type: ignore[call-overload]
                manifest = _extract_members(tar, stream, workdir, limits)
    except (tarfile.TarError, gzip.BadGzipFile, zlib.error, EOFError, ValueError) as exc:  # ValueError: sparse maps
        raise PackageError(f"not a valid tar.gz: {exc}", package_id) from exc
    if manifest.package_id != package_id:
        raise PackageError(f"manifest names package {manifest.package_id!r}", package_id)
    if manifest.device_id != device_id:
        raise PackageError(f"manifest names device {manifest.device_id!r}, uploaded by {device_id!r}", package_id)
    records = _parse_records(workdir / RECORDS_NAME, manifest)
    return UnpackedPackage(manifest, records, workdir)


def _extract_members(tar: tarfile.TarFile, stream: _MeteredStream, workdir: Path, limits: Limits) -> Manifest:
    manifest: Manifest | None = None
    expected: dict[str, ManifestFile] = {}
    total = 0
    count = 0
    while (member := tar.next()) is not None:
        # stream mode keeps every header (and its pax records) to the end; no member is looked up again
        tar.members.clear()  # type: ignore[attr-defined]
        stream.next_member()
        count += 1
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
        if member.name == RECORDS_NAME and member.size > limits.max_records_bytes:
            raise PackageError(f"{RECORDS_NAME} is {member.size} bytes, more than {limits.max_records_bytes}")
        with stream.payload():
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
                record = PackageRecord.model_validate(_DECODER.decode(line.decode(json.detect_encoding(line),
                                                                                  "surrogatepass")))
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


# What `json.loads(line, parse_constant=_no_constant)` does, without building a decoder for every line.
_DECODER = json.JSONDecoder(parse_constant=_no_constant)


def _first_line(exc: Exception) -> str:
    text = str(exc).strip()
    return " ".join(text.splitlines()[:3])[:300]
