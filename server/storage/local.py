"""Local-directory object store for the embedded default: one folder per bucket, atomic writes.

Presigned URLs point at the API's `/api/v1/objects/...` route and carry an HMAC signature made
with a key kept next to the objects, so they work like S3's without a second server. Each object's
content type is kept in a file of its own under `.content-types/`, as S3 keeps it with the object.
"""

from __future__ import annotations

import hashlib
import hmac
import io
import secrets
import shutil
import time
from pathlib import Path, PurePosixPath
from typing import IO
from urllib.parse import quote

from contract import atomic
from server.errors import InputError, NotFoundError
from server.storage import BUCKETS

OBJECTS_ROUTE = "/api/v1/objects"
UNKNOWN_TYPE = "application/octet-stream"  # objects stored without a type (by older versions)
_TYPES_DIR = ".content-types"  # outside every bucket: `path()` never names it


def _atomic_write(path: Path, source: IO[bytes]) -> None:
    atomic.write_atomic(path, lambda out: shutil.copyfileobj(source, out, 1024 * 1024))


class LocalStore:
    """An `ObjectStore` in a directory; `root/<bucket>/<key>`."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.root.mkdir(parents=True, exist_ok=True)
        self._key = self._signing_key()

    def _signing_key(self) -> bytes:
        path = self.root / ".signing-key"
        if not path.exists():
            data = secrets.token_bytes(32)
            _atomic_write(path, io.BytesIO(data))
            path.chmod(0o600)
        return path.read_bytes()

    def path(self, bucket: str, key: str) -> Path:
        """The file behind an object; refuses keys that would leave the bucket."""
        parts = PurePosixPath(key).parts
        if bucket not in BUCKETS or not parts or key.startswith("/") or ".." in parts or "." in parts:
            raise InputError(f"invalid object name {bucket}/{key}")
        if any(part.startswith(".tmp-") for part in parts):
            raise InputError(f"invalid object name {bucket}/{key}")
        return self.root.joinpath(bucket, *parts)

    def ensure_buckets(self) -> None:
        for bucket in BUCKETS:
            (self.root / bucket).mkdir(mode=0o700, exist_ok=True)

    def ping(self) -> None:
        return None

    def _type_path(self, bucket: str, key: str) -> Path:
        return self.root / _TYPES_DIR / self.path(bucket, key).relative_to(self.root)

    def put_file(self, bucket: str, key: str, source: IO[bytes], length: int, content_type: str) -> None:
        # The type goes first: a crash in between leaves a type without an object, never the reverse.
        _atomic_write(self._type_path(bucket, key), io.BytesIO(content_type.encode()))
        _atomic_write(self.path(bucket, key), source)

    def put_bytes(self, bucket: str, key: str, data: bytes, content_type: str) -> None:
        self.put_file(bucket, key, io.BytesIO(data), len(data), content_type)

    def download(self, bucket: str, key: str, target: IO[bytes]) -> None:
        path = self.path(bucket, key)
        if not path.is_file():
            raise NotFoundError(f"object not found: {bucket}/{key}")
        with path.open("rb") as source:
            shutil.copyfileobj(source, target, 1024 * 1024)

    def content_type(self, bucket: str, key: str) -> str:
        if not self.path(bucket, key).is_file():
            raise NotFoundError(f"object not found: {bucket}/{key}")
        try:
            return self._type_path(bucket, key).read_text().strip() or UNKNOWN_TYPE
        except FileNotFoundError:
            return UNKNOWN_TYPE

    def exists(self, bucket: str, key: str) -> bool:
        return self.path(bucket, key).is_file()

    def remove(self, bucket: str, key: str) -> None:
        self.path(bucket, key).unlink(missing_ok=True)
        self._type_path(bucket, key).unlink(missing_ok=True)

    def mark_imported(self, bucket: str, key: str) -> None:
        """The local store has no lifecycle rules: imported packages stay until removed."""

    def signature(self, bucket: str, key: str, expires: int) -> str:
        """HMAC-SHA256 over bucket, key and expiry time."""
        message = f"{bucket}\n{key}\n{expires}".encode()
        return hmac.new(self._key, message, hashlib.sha256).hexdigest()

    def presigned_get_url(self, bucket: str, key: str, expires_s: int) -> str:
        expires = int(time.time()) + expires_s
        signature = self.signature(bucket, key, expires)
        return f"{OBJECTS_ROUTE}/{bucket}/{quote(key)}?expires={expires}&signature={signature}"

    def verify(self, bucket: str, key: str, expires: int, signature: str) -> bool:
        """True if the signature is genuine and not yet expired."""
        if expires < time.time():
            return False
        return hmac.compare_digest(self.signature(bucket, key, expires), signature)

