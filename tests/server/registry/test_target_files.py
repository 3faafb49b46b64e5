"""Target file names and byte ranges, on the local-directory store of the embedded default."""

from __future__ import annotations

import hashlib
import io
from pathlib import Path

import pytest

from server.config import Settings
from server.errors import DigestMismatchError, InputError, RangeNotSatisfiableError
from server.registry.target_files import ByteRange, TargetFiles, object_key, parse_range
from server.storage.local import LocalStore


def test_consistent_names() -> None:
    assert object_key("digits/2.0.0/bundle.tar", "ab" * 32) == f"digits/2.0.0/{'ab' * 32}.bundle.tar"
    for bad in ("../x", "/abs", "a//b", "a/./b", ""):
        with pytest.raises(InputError):
            object_key(bad, "ab" * 32)


@pytest.mark.parametrize(("header", "expected"), [
    (None, None), ("bytes=0-9", ByteRange(0, 9, 100)), ("bytes=90-", ByteRange(90, 99, 100)),
    ("bytes=-5", ByteRange(95, 99, 100)), ("bytes=50-500", ByteRange(50, 99, 100)), ("bytes=1-2,4-5", None),
    ("items=0-1", None),
])
def test_ranges(header: str | None, expected: ByteRange | None) -> None:
    assert parse_range(header, 100) == expected


@pytest.mark.parametrize("header", ["bytes=100-", "bytes=5-4"])
def test_unsatisfiable_ranges(header: str) -> None:
    with pytest.raises(RangeNotSatisfiableError):
        parse_range(header, 100)


def test_local_store_put_and_read(tmp_path: Path) -> None:
    store = LocalStore(tmp_path)
    store.ensure_buckets()
    files = TargetFiles(store, Settings(environment="development", data_dir=tmp_path))
    data = bytes(range(256)) * 10
    sha = hashlib.sha256(data).hexdigest()
    with pytest.raises(DigestMismatchError):
        files.put("m/1/bundle.tar", io.BytesIO(data), len(data), sha, "0" * 64)
    key = files.put("m/1/bundle.tar", io.BytesIO(data), len(data), sha, sha.upper())
    assert files.size(key) == len(data)
    assert b"".join(files.read(key, ByteRange(10, 2000, len(data)))) == data[10:2001]
