"""Target files in the `bundles` bucket, named as consistent-snapshot TUF clients ask for them.

`<dir>/<sha256>.<name>`: the key carries the content hash, so an object is written once and a
published target never changes. Reads support one byte range (resumable device downloads).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import IO

from minio import Minio
from minio.error import S3Error

from server.config import Settings
from server.errors import (
    DigestMismatchError,
    InputError,
    NotFoundError,
    RangeNotSatisfiableError,
    StorageUnavailableError,
)
from server.storage import ObjectStore
from server.storage.local import LocalStore
from server.storage.s3 import S3Store

BUCKET = "bundles"
_CHUNK = 1 << 20
_RANGE = re.compile(r"^bytes=(\d*)-(\d*)$")
_PATH = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]*(/[A-Za-z0-9][A-Za-z0-9._+-]*)*$")


def object_key(target_path: str, sha256: str) -> str:
    """The consistent-snapshot name of a target: the hash prefixes the file name part."""
    if not _PATH.match(target_path) or len(target_path) > 300:
        raise InputError(f"invalid target path {target_path!r}")
    directory, sep, name = target_path.rpartition("/")
    return f"{directory}{sep}{sha256}.{name}"


@dataclass(frozen=True)
class ByteRange:
    """Inclusive byte positions of an object of `size` bytes."""

    first: int
    last: int
    size: int

    @property
    def length(self) -> int:
        return self.last - self.first + 1


def parse_range(header: str | None, size: int) -> ByteRange | None:
    """The single range a `Range` header asks for, None for the whole object (or an unusable header)."""
    if header is None:
        return None
    match = _RANGE.match(header.strip())
    if match is None or match.groups() == ("", ""):
        return None  # multiple or malformed ranges: RFC 9110 lets us answer with the whole object
    start, end = match.groups()
    if start == "":
        first, last = max(size - int(end), 0), size - 1
    else:
        first, last = int(start), min(int(end), size - 1) if end else size - 1
    if first >= size or first > last:
        raise RangeNotSatisfiableError(f"range {header!r} is outside the {size} bytes", size)
    return ByteRange(first, last, size)


class TargetFiles:
    """Writes and reads target files; the object store's S3 client is rebuilt here for ranged reads."""

    def __init__(self, store: ObjectStore, settings: Settings) -> None:
        self.store = store
        self._s3: Minio | None = None
        if isinstance(store, S3Store):
            assert settings.s3_endpoint is not None
            endpoint = settings.s3_endpoint.split("://", 1)
            self._s3 = Minio(endpoint[1], settings.s3_access_key, settings.s3_secret_key.get_secret_value(),
                             secure=endpoint[0] == "https", region=settings.s3_region)
            self._bucket = store.bucket_name(BUCKET)

    def put(self, target_path: str, body: IO[bytes], size: int, sha256: str, declared: str) -> str:
        """Store a verified upload under its consistent name; returns the object key."""
        if sha256 != declared.lower():
            raise DigestMismatchError(f"body SHA-256 is {sha256}, header says {declared}")
        key = object_key(target_path, sha256)
        if not self.store.exists(BUCKET, key):
            self.store.put_file(BUCKET, key, body, size, "application/x-tar")
        return key

    def size(self, key: str) -> int:
        """The object's length; `NotFoundError` if it is missing."""
        if isinstance(self.store, LocalStore):
            path = self.store.path(BUCKET, key)
            if not path.is_file():
                raise NotFoundError(f"no target {key}")
            return path.stat().st_size
        try:
            assert self._s3 is not None
            return int(self._s3.stat_object(self._bucket, key).size or 0)
        except S3Error as exc:
            if exc.code in ("NoSuchKey", "NoSuchObject", "NoSuchBucket"):
                raise NotFoundError(f"no target {key}") from exc
            raise StorageUnavailableError(str(exc)) from exc

    def read(self, key: str, span: ByteRange) -> Iterator[bytes]:
        """Stream the bytes of `span`."""
        if isinstance(self.store, LocalStore):
            yield from _file_chunks(self.store.path(BUCKET, key), span)
            return
        assert self._s3 is not None
        try:
            response = self._s3.get_object(self._bucket, key, offset=span.first, length=span.length)
        except S3Error as exc:
            raise StorageUnavailableError(str(exc)) from exc
        try:
            yield from response.stream(_CHUNK)
        finally:
            response.close()
            response.release_conn()


def _file_chunks(path: object, span: ByteRange) -> Iterator[bytes]:
    with open(str(path), "rb") as source:
        source.seek(span.first)
        left = span.length
        while left > 0 and (chunk := source.read(min(_CHUNK, left))):
            left -= len(chunk)
            yield chunk
