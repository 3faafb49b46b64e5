"""Object storage behind one interface: S3 (MinIO) in production, a local directory when embedded."""

from __future__ import annotations

from typing import IO, Protocol

BUCKETS = ("packages", "drift-samples", "prediction-images", "data-logs", "bundles", "mlflow")
IMPORTED_TAG = ("tinysphere-imported", "true")  # what the `packages` bucket's lifecycle rule expires


class ObjectStore(Protocol):
    """What the API and the worker need from an object store; buckets are the logical names above."""

    def ensure_buckets(self) -> None:
        """Create every bucket that does not exist yet (private)."""

    def ping(self) -> None:
        """Raise `StorageUnavailableError` if the store cannot be reached."""

    def put_file(self, bucket: str, key: str, source: IO[bytes], length: int, content_type: str) -> None:
        """Store `length` bytes read from `source`, streaming, with the content type it is served as."""

    def put_bytes(self, bucket: str, key: str, data: bytes, content_type: str) -> None:
        """Store a small object."""

    def download(self, bucket: str, key: str, target: IO[bytes]) -> None:
        """Stream an object into `target`; `NotFoundError` if it is missing."""

    def content_type(self, bucket: str, key: str) -> str:
        """The content type stored with an object; `NotFoundError` if it is missing."""

    def exists(self, bucket: str, key: str) -> bool:
        """True if the object exists."""

    def remove(self, bucket: str, key: str) -> None:
        """Delete an object; deleting a missing one is not an error."""

    def presigned_get_url(self, bucket: str, key: str, expires_s: int) -> str:
        """A URL that lets its holder read the object for `expires_s` seconds."""

    def mark_imported(self, bucket: str, key: str) -> None:
        """Tag an object `IMPORTED_TAG`, so the bucket's lifecycle rule may expire it (no rule: no effect)."""
