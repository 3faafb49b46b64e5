"""Fixtures of the updater tests: a signed repository with the v2 bundle on a loopback mirror, a device dir."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.device.updater.fakes import V2, V2_TARGET, make_device
from tests.device.updater.tuf_server import Mirror, TufRepo, add_bundle, bundle_tar, custom_field


@pytest.fixture
def repo() -> TufRepo:
    repo = TufRepo()
    repo.add_target(V2_TARGET, bundle_tar(V2), custom_field(V2))
    repo.publish()
    return repo


@pytest.fixture
def delta_repo() -> TufRepo:
    """v2 published with its file list: each file its own content-addressed target."""
    repo = TufRepo()
    add_bundle(repo, V2_TARGET, V2)
    repo.publish()
    return repo


@pytest.fixture
def delta_mirror(delta_repo: TufRepo) -> Iterator[Mirror]:
    with Mirror(delta_repo) as mirror:
        yield mirror


@pytest.fixture
def mirror(repo: TufRepo) -> Iterator[Mirror]:
    with Mirror(repo) as mirror:
        yield mirror


@pytest.fixture
def data_dir(tmp_path: Path, repo: TufRepo) -> Path:
    return make_device(tmp_path / "data", repo)
