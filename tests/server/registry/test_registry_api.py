"""The registry API: catalogue, detail with signatures and custom fields, download, publishing rules."""

from __future__ import annotations

import hashlib
import io
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from server.errors import InputError
from server.registry import bundle_archive
from tests.server.registry.fixtures import DIGITS, Repo, bundle_dir, publish
from tests.server.utils import auth


@pytest.fixture(scope="module")
def published(repo: Repo, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return publish(repo, tmp_path_factory.mktemp("api-bundles"), "4.0.0")


def test_models_versions_detail_and_download(published: Path, client: TestClient, viewer_token: str) -> None:
    models = client.get("/api/v1/registry/models", headers=auth(viewer_token)).json()["items"]
    assert any(m["model"] == "digits" and m["versions"] >= 1 for m in models)
    versions = client.get("/api/v1/registry/models/digits/versions", headers=auth(viewer_token)).json()["items"]
    entry = next(v for v in versions if v["version"] == "4.0.0")
    assert entry["metrics"]["heldout_accuracy"] > 0.9 and entry["target_path"] == "digits/4.0.0/bundle.tar"
    assert entry["devices_running"] == 0
    detail = client.get("/api/v1/registry/models/digits/versions/4.0.0", headers=auth(viewer_token)).json()
    assert detail["custom"]["tinymlops"]["version"] == "4.0.0" and detail["manifest"]["name"] == "digits"
    assert len(detail["signatures"]["keyids"]) == 1
    download = client.get("/api/v1/registry/models/digits/versions/4.0.0/download", headers=auth(viewer_token))
    assert download.status_code == 200 and download.content == published.read_bytes()
    assert client.get("/api/v1/registry/models/nope/versions", headers=auth(viewer_token)).status_code == 404


def test_publishing_again_is_a_no_op_and_changed_content_is_refused(repo: Repo, published: Path, tmp_path: Path,
                                                                    capsys: pytest.CaptureFixture[str]) -> None:
    from server.cli import main

    publish(repo, tmp_path, "4.0.0")  # same bytes: already published
    tar = tmp_path / "digits-4.0.0-changed.tar"
    assert main(["bundle", "build", str(bundle_dir(tmp_path / "other", "4.0.0", description="changed")),
                 "--out", str(tar)]) == 0
    capsys.readouterr()
    assert main(["bundle", "publish", str(tar), "--key", str(repo.keys / "targets.key"), "--server", repo.url,
                 "--token", repo.operator_token]) == 2
    assert "already published with other content" in capsys.readouterr().err


def test_bundle_build_is_deterministic_and_checked(tmp_path: Path) -> None:
    first, second = io.BytesIO(), io.BytesIO()
    bundle_archive.build(DIGITS, first)
    bundle_archive.build(DIGITS, second)
    assert hashlib.sha256(first.getvalue()).digest() == hashlib.sha256(second.getvalue()).digest()
    first.seek(0)
    info = bundle_archive.read(first)
    assert info.target_path == "digits/1.0.0/bundle.tar"
    broken = bundle_dir(tmp_path, "5.0.0")
    (broken / "labels.txt").write_text("tampered\n")
    with pytest.raises(InputError):
        bundle_archive.build(broken, io.BytesIO())


def test_uploads_need_an_operator_and_the_right_digest(client: TestClient, viewer_token: str,
                                                       operator_token: str) -> None:
    path = "/api/v1/registry/uploads/digits/9.0.0/bundle.tar"
    headers = {"X-Content-SHA256": hashlib.sha256(b"abc").hexdigest()}
    assert client.put(path, content=b"abc", headers={**headers, **auth(viewer_token)}).status_code == 403
    wrong = client.put(path, content=b"abd", headers={**headers, **auth(operator_token)})
    assert wrong.status_code == 400
