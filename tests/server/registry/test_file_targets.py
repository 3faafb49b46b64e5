"""Bundles published file by file: each file a content-addressed target, the bundle target's signed custom
field listing them; the server refuses a list that is not the bundle's own files or not published with it."""

from __future__ import annotations

import copy
import hashlib
from pathlib import Path

import pytest
import urllib3
from fastapi.testclient import TestClient
from sqlalchemy import select
from tuf.api.metadata import TargetFile, Targets

from server.db.models import Bundle
from server.registry import bundle_archive, keys, offline, repository
from tests.server.registry.fixtures import Repo, bundle_dir, publish, updater
from tests.server.utils import auth, enroll

NAMES = sorted(bundle_archive.BUNDLE_FILES)


@pytest.fixture(scope="module")
def device_token(client: TestClient, operator_token: str) -> str:
    return enroll(client, operator_token).secret


def current_targets(repo: Repo) -> Targets:
    with repo.backends.sessions() as session:
        return repository.parse(repository.body(session, "targets"), Targets).signed


def test_each_file_is_a_signed_target_a_device_can_fetch(repo: Repo, device_token: str, tmp_path: Path) -> None:
    tar = publish(repo, tmp_path, "5.0.0")
    source = tmp_path / "digits-5.0.0"
    client = updater(repo, device_token, tmp_path / "device")
    client.refresh()
    bundle = client.get_targetinfo("digits/5.0.0/bundle.tar")
    assert bundle is not None and bundle.hashes["sha256"] == hashlib.sha256(tar.read_bytes()).hexdigest()
    listed = bundle.custom["tinymlops"]["files"]
    assert sorted(listed) == NAMES
    for name, entry in listed.items():
        data = (source / name).read_bytes()
        assert entry["sha256"] == hashlib.sha256(data).hexdigest() and entry["length"] == len(data)
        assert entry["target"] == f"digits/files/{entry['sha256']}{Path(name).suffix}"
        info = client.get_targetinfo(entry["target"])
        assert info is not None and (info.hashes["sha256"], info.length) == (entry["sha256"], entry["length"])
        assert Path(client.download_target(info, str(tmp_path / name))).read_bytes() == data
    with repo.backends.sessions() as session:  # the catalogue knows bundles, not their files
        paths = session.scalars(select(Bundle.target_path)).all()
    assert "digits/5.0.0/bundle.tar" in paths and not any("/files/" in p for p in paths)


def test_a_file_unchanged_since_an_earlier_bundle_is_published_once(repo: Repo, tmp_path: Path) -> None:
    publish(repo, tmp_path, "5.1.0")
    before = {p for p in current_targets(repo).targets if "/files/" in p}
    publish(repo, tmp_path, "5.1.1")  # only bundle.json differs (its version)
    after = current_targets(repo).targets
    new = {p for p in after if "/files/" in p} - before
    assert new == {after["digits/5.1.1/bundle.tar"].custom["tinymlops"]["files"]["bundle.json"]["target"]}


def _sign_and_send(repo: Repo, tmp_path: Path, version: str, edit: str) -> tuple[int, str, bytes]:
    """A bundle whose signed metadata an operator's tool got wrong (`edit`); every byte uploaded."""
    tar = tmp_path / f"{version}.tar"
    with tar.open("wb") as out:
        info = bundle_archive.build(bundle_dir(tmp_path, version), out)
    with tar.open("rb") as source:
        info = bundle_archive.read(source)
    target, files = offline.target_file(info, tar), offline.file_targets(info)
    listed = target.unrecognized_fields["custom"]["tinymlops"]["files"]
    if edit == "swapped":  # the kNN state's entry points at the labels' target
        listed["knn_state.npz"] = copy.deepcopy(listed["labels.txt"])
    elif edit == "unpublished":  # the list is right, but one file target is left out of the metadata
        files = [f for f in files if f.path != listed["bundle.json"]["target"]]  # new with every version
    with repo.backends.sessions() as session:
        current = repository.body(session, "targets")
    signed = offline.add_target(current, target, keys.load(repo.keys / "targets.key"), 365, files)
    assert signed is not None
    unpacked = tmp_path / f"{version}-files"
    paths = bundle_archive.extract(tar, unpacked)
    uploads: list[tuple[str, bytes]] = [(target.path, tar.read_bytes())]
    uploads += [(entry["target"], paths[name].read_bytes()) for name, entry in info.file_list().items()]
    token = auth(repo.operator_token)
    for path, data in uploads:
        response = urllib3.request("PUT", f"{repo.url}/api/v1/registry/uploads/{path}", body=data,
                                   headers={**token, "X-Content-SHA256": hashlib.sha256(data).hexdigest()})
        assert response.status == 201, response.data
    response = urllib3.request("POST", f"{repo.url}/api/v1/registry/publish", json={"metadata": signed.decode()},
                               headers=token)
    return response.status, str(response.json().get("detail")), current


@pytest.mark.parametrize(("edit", "why"), [
    ("swapped", "does not list the bundle's files and hashes"),
    ("unpublished", "its file bundle.json is not the signed target"),
])
def test_a_file_list_that_does_not_match_is_refused(repo: Repo, tmp_path: Path, edit: str, why: str) -> None:
    status, detail, before = _sign_and_send(repo, tmp_path, f"5.2.{len(edit)}", edit)
    assert status == 422 and why in detail, detail
    with repo.backends.sessions() as session:
        assert repository.body(session, "targets") == before  # nothing published


def test_offline_signing_refuses_a_file_target_with_other_content(tmp_path: Path) -> None:
    from server.errors import InputError

    signer = keys.generate()
    first = offline.add_target(None, TargetFile(1, {"sha256": "a" * 64}, "m/1/bundle.tar"), signer,
                               files=[TargetFile(3, {"sha256": "b" * 64}, f"m/files/{'b' * 64}.txt")])
    with pytest.raises(InputError, match="already published with other content"):
        offline.add_target(first, TargetFile(1, {"sha256": "c" * 64}, "m/2/bundle.tar"), signer,
                           files=[TargetFile(4, {"sha256": "b" * 64}, f"m/files/{'b' * 64}.txt")])
