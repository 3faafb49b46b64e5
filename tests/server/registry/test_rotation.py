"""Key rotation: devices pinned to root version 1 follow new root and targets keys; old keys stop working."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from server.cli import main
from server.errors import InputError
from server.registry import keys, offline, repository
from tests.server.registry.fixtures import Repo, publish, updater
from tests.server.utils import auth, enroll


def test_rotating_targets_then_root_keeps_devices_updating(repo: Repo, client: TestClient, operator_token: str,
                                                           admin_token: str, tmp_path: Path) -> None:
    device = enroll(client, operator_token)
    publish(repo, tmp_path, "6.0.0")
    old_targets_key = keys.load(repo.keys / "targets.key")
    server = ["--server", repo.url, "--token", admin_token]
    assert main(["keys", "rotate", "targets", "--dir", str(repo.keys), *server]) == 0
    assert main(["keys", "rotate", "root", "--dir", str(repo.keys), "--root-keys", "3", "--root-threshold", "2",
                 *server]) == 0
    assert len(list((repo.keys / "retired").glob("root-*.key"))) == 3
    publish(repo, tmp_path / "after", "6.1.0")
    client_tuf = updater(repo, device.secret, tmp_path / "device")  # still pinned to root version 1
    client_tuf.refresh()
    for version in ("6.0.0", "6.1.0"):
        info = client_tuf.get_targetinfo(f"digits/{version}/bundle.tar")
        assert info is not None
        client_tuf.download_target(info)
    with repo.backends.sessions() as session:
        current = repository.body(session, "targets")
    stale = offline.sign_targets(repository.parse(current, repository.Targets), old_targets_key)
    refused = client.post("/api/v1/registry/publish", json={"metadata": stale.decode()}, headers=auth(operator_token))
    assert refused.status_code == 422


def test_keys_init_refuses_an_existing_directory_and_bad_thresholds(repo: Repo, tmp_path: Path) -> None:
    with pytest.raises(InputError):
        offline.init(repo.keys)
    with pytest.raises(InputError):
        offline.init(tmp_path / "k", root_keys=2, root_threshold=3)
    offline.init(tmp_path / "k2", root_keys=1, root_threshold=1)
    assert oct((tmp_path / "k2" / "targets.key").stat().st_mode & 0o777) == "0o600"
