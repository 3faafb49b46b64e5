"""A device's python-tuf client against the live server: verified downloads and the TUF attacks."""

from __future__ import annotations

import hashlib
import io
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import delete
from tuf.api import exceptions
from tuf.api.metadata import Metadata, Targets, Timestamp

from server.db.models import TufMetadata
from server.registry import keys, offline, repository
from server.registry.target_files import BUCKET, object_key
from tests.server.registry.fixtures import Repo, publish, updater
from tests.server.utils import auth, enroll


@pytest.fixture(scope="module")
def device_token(client: TestClient, operator_token: str) -> str:
    return enroll(client, operator_token).secret


@pytest.fixture(scope="module")
def published(repo: Repo, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return publish(repo, tmp_path_factory.mktemp("bundles"), "1.1.0")


def test_device_downloads_and_verifies_a_published_bundle(repo: Repo, published: Path, device_token: str,
                                                           tmp_path: Path) -> None:
    client = updater(repo, device_token, tmp_path)
    client.refresh()
    info = client.get_targetinfo("digits/1.1.0/bundle.tar")
    assert info is not None
    assert info.custom["tinymlops"]["model"] == "digits" and info.custom["tinymlops"]["version"] == "1.1.0"
    assert info.custom["tinymlops"]["input_shape"] == [1, 32, 32, 3]
    assert info.custom["tinymlops"]["input_dtype"] == "uint8"
    assert "raspberrypi3" in info.custom["tinymlops"]["device_types"]
    path = client.download_target(info)
    assert Path(path).read_bytes() == published.read_bytes()


def test_targets_support_ranges(repo: Repo, published: Path, device_token: str) -> None:
    import urllib3

    data = published.read_bytes()
    url = f"{repo.url}/tuf/targets/digits/1.1.0/{hashlib.sha256(data).hexdigest()}.bundle.tar"
    headers = auth(device_token)
    whole = urllib3.request("GET", url, headers=headers)
    assert whole.status == 200 and whole.data == data and whole.headers["Accept-Ranges"] == "bytes"
    part = urllib3.request("GET", url, headers={**headers, "Range": "bytes=100-"})
    assert part.status == 206 and part.data == data[100:]
    assert part.headers["Content-Range"] == f"bytes 100-{len(data) - 1}/{len(data)}"
    tail = urllib3.request("GET", url, headers={**headers, "Range": "bytes=-10"})
    assert tail.status == 206 and tail.data == data[-10:]
    beyond = urllib3.request("GET", url, headers={**headers, "Range": f"bytes={len(data)}-"})
    assert beyond.status == 416 and beyond.headers["Content-Range"] == f"bytes */{len(data)}"
    assert urllib3.request("GET", url).status == 401


def test_a_byte_changed_in_the_bucket_is_refused(repo: Repo, published: Path, device_token: str,
                                                  tmp_path: Path) -> None:
    data = published.read_bytes()
    key = object_key("digits/1.1.0/bundle.tar", hashlib.sha256(data).hexdigest())
    tampered = data[:500] + bytes([data[500] ^ 1]) + data[501:]
    repo.backends.store.put_bytes(BUCKET, key, tampered, "application/x-tar")
    try:
        client = updater(repo, device_token, tmp_path)
        client.refresh()
        info = client.get_targetinfo("digits/1.1.0/bundle.tar")
        assert info is not None
        with pytest.raises(exceptions.LengthOrHashMismatchError):
            client.download_target(info)
    finally:
        repo.backends.store.put_bytes(BUCKET, key, data, "application/x-tar")


def test_an_expired_timestamp_is_refused(repo: Repo, published: Path, device_token: str, tmp_path: Path) -> None:
    past = datetime.now(UTC) - timedelta(days=3)
    with repo.backends.sessions() as session:
        repository.lock(session)
        root = repository.current_root(session).signed
        repository.write_snapshot(session, repo.backends.settings, root, past)  # expired long ago
        session.commit()
    with pytest.raises(exceptions.ExpiredMetadataError):
        updater(repo, device_token, tmp_path / "a").refresh()
    with repo.backends.sessions() as session:
        assert repository.refresh_online(session, repo.backends.settings)  # the worker's re-signing
        session.commit()
    updater(repo, device_token, tmp_path / "b").refresh()


def test_targets_signed_by_an_unknown_key_are_refused(repo: Repo, published: Path, client: TestClient,
                                                      operator_token: str) -> None:
    with repo.backends.sessions() as session:
        current = repository.body(session, "targets")
    rogue = offline.sign_targets(repository.parse(current, Targets), keys.generate())
    response = client.post("/api/v1/registry/publish", json={"metadata": rogue.decode()},
                           headers=auth(operator_token))
    assert response.status_code == 422 and "not signed" in response.json()["detail"]
    with repo.backends.sessions() as session:
        assert repository.body(session, "targets") == current


def test_root_needs_two_of_three_keys(repo: Repo, client: TestClient, admin_token: str, device_token: str,
                                      tmp_path: Path) -> None:
    root = offline.current_root(repo.keys)
    signer = keys.load(sorted(repo.keys.glob("root-*.key"))[0])
    root.signed.version += 1
    root.signatures.clear()
    root.sign(signer)
    response = client.put("/api/v1/registry/root", json={"metadata": root.to_bytes().decode()},
                          headers=auth(admin_token))
    assert response.status_code == 422 and "lacks the signatures" in response.json()["detail"]
    # A mirror serving it anyway does not fool the device either.
    with repo.backends.sessions() as session:
        session.add(TufMetadata(role="root", version=root.signed.version, body=root.to_bytes(),
                                expires=root.signed.expires))
        session.commit()
    try:
        with pytest.raises(exceptions.UnsignedMetadataError):
            updater(repo, device_token, tmp_path).refresh()
    finally:
        with repo.backends.sessions() as session:
            session.execute(delete(TufMetadata).where(TufMetadata.role == "root",
                                                      TufMetadata.version == root.signed.version))
            session.commit()


def test_metadata_routes(repo: Repo, published: Path, client: TestClient, device_token: str) -> None:
    timestamp = client.get("/tuf/metadata/timestamp.json", headers=auth(device_token))
    assert timestamp.status_code == 200
    parsed = Metadata[Timestamp].from_bytes(timestamp.content)
    assert parsed.signed.type == "timestamp"
    assert client.get("/tuf/metadata/1.root.json", headers=auth(device_token)).status_code == 200
    assert client.get("/tuf/metadata/999.root.json", headers=auth(device_token)).status_code == 404
    assert client.get("/tuf/metadata/../x", headers=auth(device_token)).status_code == 404
    assert client.get("/tuf/metadata/timestamp.json").status_code == 401
    assert io.BytesIO(timestamp.content).read(1) == b"{"
