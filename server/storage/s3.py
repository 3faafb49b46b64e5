"""S3 object store through the `minio` client: MinIO in production, any S3 API in tests."""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from typing import IO, BinaryIO, cast
from urllib.parse import urlsplit

import urllib3
from minio import Minio
from minio.commonconfig import Tags
from minio.error import MinioException, S3Error

from server.errors import NotFoundError, StorageUnavailableError
from server.storage import BUCKETS, IMPORTED_TAG

logger = logging.getLogger(__name__)
_CHUNK = 1024 * 1024
_MISSING = frozenset({"NoSuchKey", "NoSuchBucket", "NoSuchObject"})


def _client(endpoint: str, access_key: str, secret_key: str, region: str, timeout_s: float) -> Minio:
    parts = urlsplit(endpoint)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError(f"S3 endpoint must be http(s)://host[:port], not {endpoint!r}")
    http = urllib3.PoolManager(
        timeout=urllib3.Timeout(connect=timeout_s, read=timeout_s),
        retries=urllib3.Retry(total=2, backoff_factor=0.2, status_forcelist=(502, 503, 504)),
        maxsize=32,
    )
    return Minio(
        parts.netloc,
        access_key=access_key,
        secret_key=secret_key,
        secure=parts.scheme == "https",
        region=region,
        http_client=http,
    )


class S3Store:
    """An `ObjectStore` on an S3 endpoint; `public_endpoint` is the host presigned URLs name."""

    def __init__(
        self,
        endpoint: str,
        access_key: str,
        secret_key: str,
        *,
        region: str = "us-east-1",
        timeout_s: float = 10.0,
        bucket_prefix: str = "",
        public_endpoint: str | None = None,
    ) -> None:
        self._client = _client(endpoint, access_key, secret_key, region, timeout_s)
        self._signer = _client(public_endpoint or endpoint, access_key, secret_key, region, timeout_s)
        self._prefix = bucket_prefix

    def bucket_name(self, bucket: str) -> str:
        """The real S3 bucket behind a logical bucket name."""
        return self._prefix + bucket

    def ensure_buckets(self) -> None:
        for bucket in BUCKETS:
            name = self.bucket_name(bucket)
            with _translated():
                if not self._client.bucket_exists(name):
                    try:
                        self._client.make_bucket(name)
                        logger.info("created bucket %s", name)
                    except S3Error as exc:  # another replica won the race
                        if exc.code not in ("BucketAlreadyOwnedByYou", "BucketAlreadyExists"):
                            raise

    def ping(self) -> None:
        with _translated():
            self._client.bucket_exists(self.bucket_name(BUCKETS[0]))

    def put_file(self, bucket: str, key: str, source: IO[bytes], length: int, content_type: str) -> None:
        with _translated():
            self._client.put_object(
                self.bucket_name(bucket), key, cast(BinaryIO, source), length, content_type=content_type,
                part_size=16 * _CHUNK,
            )

    def put_bytes(self, bucket: str, key: str, data: bytes, content_type: str) -> None:
        self.put_file(bucket, key, io.BytesIO(data), len(data), content_type)

    def download(self, bucket: str, key: str, target: IO[bytes]) -> None:
        with _translated():
            response = self._client.get_object(self.bucket_name(bucket), key)
            try:
                for chunk in response.stream(_CHUNK):
                    target.write(chunk)
            finally:
                response.close()
                response.release_conn()

    def content_type(self, bucket: str, key: str) -> str:
        with _translated():
            stat = self._client.stat_object(self.bucket_name(bucket), key)
        return stat.content_type or "application/octet-stream"

    def exists(self, bucket: str, key: str) -> bool:
        try:
            with _translated():
                self._client.stat_object(self.bucket_name(bucket), key)
        except NotFoundError:
            return False
        return True

    def remove(self, bucket: str, key: str) -> None:
        with _translated():
            self._client.remove_object(self.bucket_name(bucket), key)

    def mark_imported(self, bucket: str, key: str) -> None:
        tags = Tags.new_object_tags()
        tags[IMPORTED_TAG[0]] = IMPORTED_TAG[1]
        with _translated():
            self._client.set_object_tags(self.bucket_name(bucket), key, tags)

    def presigned_get_url(self, bucket: str, key: str, expires_s: int) -> str:
        with _translated():
            return self._signer.presigned_get_object(
                self.bucket_name(bucket), key, expires=timedelta(seconds=expires_s)
            )


@contextmanager
def _translated() -> Iterator[None]:
    """Turn minio/urllib3 failures into the server's own errors."""
    try:
        yield
    except S3Error as exc:
        if exc.code in _MISSING:
            raise NotFoundError(f"object not found: {exc.bucket_name}/{exc.object_name}") from exc
        raise StorageUnavailableError(f"{exc.code}: {exc.message}") from exc
    except (MinioException, urllib3.exceptions.HTTPError, OSError) as exc:
        raise StorageUnavailableError(str(exc)) from exc
