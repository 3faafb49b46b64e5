"""Both object stores behind the one interface: S3 (the moto server over HTTP) and a local directory."""

from __future__ import annotations

import io
import urllib.request
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from server.backends import Backends
from server.errors import InputError, NotFoundError, StorageUnavailableError
from server.storage import BUCKETS, ObjectStore
from server.storage.local import LocalStore
from server.storage.s3 import S3Store


def _roundtrip(store: ObjectStore) -> None:
    store.ensure_buckets()
    store.put_bytes("drift-samples", "d1/1.jpg", b"jpeg", "image/jpeg")
    assert store.exists("drift-samples", "d1/1.jpg")
    target = io.BytesIO()
    store.download("drift-samples", "d1/1.jpg", target)
    assert target.getvalue() == b"jpeg"
    store.remove("drift-samples", "d1/1.jpg")
    assert not store.exists("drift-samples", "d1/1.jpg")
    with pytest.raises(NotFoundError):
        store.download("drift-samples", "d1/1.jpg", io.BytesIO())


def test_s3_store(backends: Backends) -> None:
    _roundtrip(backends.store)


def test_s3_buckets_are_private(backends: Backends) -> None:
    store = backends.store
    assert isinstance(store, S3Store)
    store.put_bytes("prediction-images", "private.jpg", b"secret", "image/jpeg")
    endpoint = backends.settings.s3_endpoint
    with pytest.raises(urllib.request.HTTPError) as refused:
        urllib.request.urlopen(f"{endpoint}/{store.bucket_name('prediction-images')}/private.jpg", timeout=10)
    assert refused.value.code == 403
    url = store.presigned_get_url("prediction-images", "private.jpg", 60)
    with urllib.request.urlopen(url, timeout=10) as response:
        assert response.read() == b"secret"


def test_unreachable_s3_is_storage_unavailable() -> None:
    store = S3Store("http://127.0.0.1:9", "key-id", "secret-key", timeout_s=1)
    with pytest.raises(StorageUnavailableError):
        store.put_bytes("packages", "x", b"x", "application/gzip")


def test_local_store(tmp_path: Path) -> None:
    store = LocalStore(tmp_path)
    _roundtrip(store)
    assert sorted(p.name for p in tmp_path.iterdir() if p.is_dir() and p.name != ".content-types") == sorted(BUCKETS)
    for bad in ("../x", "/etc/passwd", "a/../../x", ""):
        with pytest.raises(InputError):
            store.path("packages", bad)
    with pytest.raises(InputError):
        store.path("not-a-bucket", "x")


def test_local_presigned_urls_go_through_the_api(tmp_path: Path, backends: Backends) -> None:
    from server.app import create_app

    local = Backends(backends.settings, backends.engine, backends.sessions, LocalStore(tmp_path))
    local.store.put_bytes("drift-samples", "d/1.jpg", b"jpeg", "image/jpeg")
    url = local.store.presigned_get_url("drift-samples", "d/1.jpg", 60)
    with TestClient(create_app(local)) as client:
        assert client.get(url).content == b"jpeg"
        assert client.get(url.replace("signature=", "signature=0")).status_code == 403
        assert client.get(url.replace("d/1.jpg", "d/2.jpg")).status_code == 403
        expired = local.store.presigned_get_url("drift-samples", "d/1.jpg", -1)
        assert client.get(expired).status_code == 403


@pytest.mark.parametrize("kind", ["s3", "local"])
def test_the_content_type_is_stored_with_the_object(kind: str, backends: Backends, tmp_path: Path) -> None:
    store = backends.store if kind == "s3" else LocalStore(tmp_path)
    store.ensure_buckets()
    store.put_bytes("drift-samples", "d/1.html", b"\x89PNG", "image/png")
    store.put_file("data-logs", "d/p.jsonl", io.BytesIO(b"{}\n"), 3, "application/x-ndjson")
    assert store.content_type("drift-samples", "d/1.html") == "image/png"  # the stored type, not the key's
    assert store.content_type("data-logs", "d/p.jsonl") == "application/x-ndjson"
    store.put_bytes("drift-samples", "d/1.html", b"\xff\xd8\xff", "image/jpeg")  # replaced with its new type
    assert store.content_type("drift-samples", "d/1.html") == "image/jpeg"
    store.remove("drift-samples", "d/1.html")
    with pytest.raises(NotFoundError):
        store.content_type("drift-samples", "d/1.html")
