"""Registry fixtures shared by the registry and rollout tests: one key directory and repository per session.

The test database is shared by the whole session and holds one TUF repository, so its keys and the
live server are kept here once, whichever conftest asks first.
"""

from __future__ import annotations

import shutil
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import urllib3
import uvicorn
from tuf.api.exceptions import DownloadHTTPError
from tuf.ngclient import Updater
from tuf.ngclient.fetcher import FetcherInterface

from server.app import create_app
from server.backends import Backends, open_backends
from server.cli import main
from server.config import Settings
from server.registry import offline

DIGITS = Path(__file__).resolve().parents[3] / "device" / "models" / "digits"
_SESSION: dict[str, Any] = {}


@dataclass
class Repo:
    keys: Path
    backends: Backends
    url: str
    operator_token: str


class BearerFetcher(FetcherInterface):
    """An ngclient fetcher that sends the device's bearer token."""

    def __init__(self, token: str) -> None:
        self._http = urllib3.PoolManager(headers={"Authorization": f"Bearer {token}"})

    def _fetch(self, url: str) -> Iterator[bytes]:
        response = self._http.request("GET", url, preload_content=False, timeout=10)
        if response.status >= 400:
            response.close()
            raise DownloadHTTPError(f"HTTP {response.status}", response.status)
        return response.stream(65536)  # type: ignore[no-any-return]


def updater(repo: Repo, token: str, workdir: Path, root: bytes | None = None) -> Updater:
    """A python-tuf client as a device runs it, pinned to the repository's root version 1."""
    metadata, targets = workdir / "metadata", workdir / "targets"
    metadata.mkdir(parents=True, exist_ok=True)
    targets.mkdir(parents=True, exist_ok=True)
    pinned = root if root is not None else (repo.keys / "1.root.json").read_bytes()
    return Updater(str(metadata), f"{repo.url}/tuf/metadata/", str(targets), f"{repo.url}/tuf/targets/",
                   fetcher=BearerFetcher(token), bootstrap=pinned)


def bundle_dir(tmp: Path, version: str, **changes: Any) -> Path:
    """A copy of the factory bundle with another version (and any bundle.json changes)."""
    import json

    target = tmp / f"digits-{version}"
    shutil.copytree(DIGITS, target)
    meta = json.loads((target / "bundle.json").read_text())
    meta.update(version=version, **changes)
    (target / "bundle.json").write_text(json.dumps(meta, indent=2, sort_keys=True))
    return target


def publish(repo: Repo, tmp: Path, version: str, **changes: Any) -> Path:
    """Build and publish a bundle version through the CLI, as an operator would."""
    tar = tmp / f"digits-{version}.tar"
    assert main(["bundle", "build", str(bundle_dir(tmp, version, **changes)), "--out", str(tar)]) == 0
    assert main(["bundle", "publish", str(tar), "--key", str(repo.keys / "targets.key"), "--server", repo.url,
                 "--token", repo.operator_token]) == 0
    return tar


def _serve(backends: Backends) -> str:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(create_app(backends), log_level="warning", lifespan="on"))
    threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True).start()
    deadline = time.monotonic() + 10
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.02)
    _SESSION["server"] = server
    return f"http://127.0.0.1:{port}"


def _repo(tmp: Path, settings: Settings, database_url: str, store_backends: Backends, operator_token: str) -> Repo:
    keys = tmp / "keys"
    offline.init(keys)
    online = settings.model_copy(update={"tuf_snapshot_key_file": keys / "snapshot.key",
                                         "tuf_timestamp_key_file": keys / "timestamp.key"})
    backends = open_backends(online, database_url, store=store_backends.store)
    repo = Repo(keys, backends, _serve(backends), operator_token)
    assert main(["keys", "push-root", "--dir", str(keys), "--server", repo.url, "--token", _SESSION["admin"]]) == 0
    return repo


@pytest.fixture(scope="session")
def repo(tmp_path_factory: pytest.TempPathFactory, settings: Settings, database_url: str, backends: Backends,
         operator_token: str, admin_token: str) -> Iterator[Repo]:
    """The session's TUF repository: root version 1 installed, served over loopback by uvicorn."""
    if "repo" not in _SESSION:
        _SESSION["admin"] = admin_token
        _SESSION["repo"] = _repo(tmp_path_factory.mktemp("registry"), settings, database_url, backends,
                                 operator_token)
    yield _SESSION["repo"]
