"""`tinysphere serve` with zero configuration: embedded PostgreSQL, local objects, local MLflow store."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from tuf.ngclient import Updater

from tests.server.processes import postmasters, reapers
from tests.server.registry.fixtures import BearerFetcher
from tests.server.utils import PackageSpec, build_package, drift_record
from tests.utils.net import free_port
from tests.utils.wait import wait_until

JPEG = b"\xff\xd8\xff\xe0 tiny \xff\xd9"


class Server:
    def __init__(self, data_dir: Path) -> None:
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        env = {k: v for k, v in os.environ.items() if not k.startswith("TINYSPHERE_")}
        argv = [sys.executable, "-m", "server.cli", "serve", "--data-dir", str(data_dir), "--port", str(self.port),
                "--no-access-log"]
        self.process = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                        cwd=data_dir.parent)
        self.output: list[str] = []

    def wait_ready(self, timeout_s: float = 90) -> None:
        deadline = time.monotonic() + timeout_s
        assert self.process.stdout is not None
        os.set_blocking(self.process.stdout.fileno(), False)
        while time.monotonic() < deadline:
            self.output.extend(line.rstrip() for line in self.process.stdout.readlines())
            if self.process.poll() is not None:
                pytest.fail("serve exited:\n" + "\n".join(self.output))
            try:
                if self.call("GET", "/healthz")[0] == 200:
                    return
            except OSError:
                pass
            time.sleep(0.3)
        pytest.fail("serve did not become ready:\n" + "\n".join(self.output))

    def call(self, method: str, path: str, token: str | None = None, body: bytes | dict[str, Any] | None = None,
             headers: dict[str, str] | None = None) -> tuple[int, Any]:
        data = json.dumps(body).encode() if isinstance(body, dict) else body
        request = urllib.request.Request(self.base + path, data=data, method=method, headers=headers or {})
        if isinstance(body, dict):
            request.add_header("Content-Type", "application/json")
        if token:
            request.add_header("Authorization", f"Bearer {token}")
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                raw = response.read()
                return response.status, json.loads(raw) if raw.startswith(b"{") else raw
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read()

    def admin_token(self) -> str | None:
        assert self.process.stdout is not None
        self.output.extend(line.rstrip() for line in self.process.stdout.readlines())
        found = [line.split()[-1] for line in self.output if "Admin API token" in line]
        return found[0] if found else None

    def kill(self) -> None:
        self.process.kill()
        self.process.wait()

    def stop(self) -> None:
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


@pytest.fixture
def data_dir() -> Iterator[Path]:
    # Not under pytest's basetemp: each new pytest session on the machine makes that private (0700) again,
    # which shuts the embedded PostgreSQL's system user out of its own files while it runs.
    root = Path(tempfile.mkdtemp(prefix="tinysphere-serve-"))
    yield root / "tinysphere-data"
    shutil.rmtree(root, ignore_errors=True)


def _wait_imported(server: Server, device: dict[str, str], package_id: str, timeout_s: float = 90) -> dict[str, Any]:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        status, body = server.call("GET", f"/api/v1/sync/packages/{package_id}", device["device_secret"])
        if status == 200 and body["status"] != "queued":
            return dict(body)
        time.sleep(0.5)
    pytest.fail(f"package {package_id} not imported in time")


def test_serve_with_zero_configuration(data_dir: Path) -> None:
    server = Server(data_dir)
    try:
        server.wait_ready()
        token = server.admin_token()
        assert token and token.startswith("tso_")
        mlflow = [line for line in server.output if line.startswith("MLflow tracking URI: ")]
        assert len(mlflow) == 1 and "tinysphere mlflow-ui" in mlflow[0]  # the embedded store, said once
        status, enrollment = server.call("POST", "/api/v1/enrollment-tokens", token, {})
        assert status == 201
        status, device = server.call("POST", "/api/v1/devices/enroll", enrollment["token"], {"hardware": {}})
        assert status == 201
        spec = PackageSpec(device["device_id"], [drift_record(1, "blobs/f.jpg")], {"f.jpg": JPEG})
        body = build_package(spec)
        headers = {"X-Content-SHA256": hashlib.sha256(body).hexdigest(), "Content-Type": "application/gzip"}
        status, _ = server.call("PUT", f"/api/v1/sync/packages/{spec.package_id}", device["device_secret"], body,
                                headers)
        assert status == 201
        assert _wait_imported(server, device, spec.package_id)["status"] == "imported"
        status, events = server.call("GET", f"/api/v1/drift/events?device_id={device['device_id']}", token)
        status, detail = server.call("GET", f"/api/v1/drift/events/{events['items'][0]['id']}", token)
        status, image = server.call("GET", detail["sample_url"])
        assert status == 200 and image == JPEG
        _refresh_as_device(server, device["device_secret"], data_dir, workdir=data_dir.parent / "device-1")
    finally:
        server.stop()
    assert {p.name for p in data_dir.iterdir()} >= {"objects", "postgres", "tuf"}
    assert "DEVELOPMENT TUF KEYS in " + str((data_dir / "tuf").resolve()) in "\n".join(server.output)
    keys = {path.name: path.read_bytes() for path in (data_dir / "tuf").iterdir()}

    again = Server(data_dir)  # second start: same data, no new admin token, the same keys and root
    try:
        again.wait_ready()
        assert again.admin_token() is None
        assert again.call("GET", "/api/v1/devices", token)[0] == 200
        assert {path.name: path.read_bytes() for path in (data_dir / "tuf").iterdir()} == keys
        assert again.call("GET", "/tuf/metadata/2.root.json", device["device_secret"])[0] == 404
        _refresh_as_device(again, device["device_secret"], data_dir, workdir=data_dir.parent / "device-2")
    finally:
        again.stop()
    assert sum("DEVELOPMENT TUF KEYS" in line for line in again.output) == 1


def _refresh_as_device(server: Server, secret: str, data_dir: Path, workdir: Path) -> None:
    """A device's python-tuf client, pinned to the development root, trusts the server's metadata."""
    pinned = (data_dir / "tuf" / "1.root.json").read_bytes()
    status, served = server.call("GET", "/tuf/metadata/1.root.json", secret)
    assert status == 200 and served == json.loads(pinned)
    (workdir / "targets").mkdir(parents=True)
    client = Updater(str(workdir), f"{server.base}/tuf/metadata/", str(workdir / "targets"),
                     f"{server.base}/tuf/targets/", fetcher=BearerFetcher(secret), bootstrap=pinned)
    client.refresh()
    assert (workdir / "timestamp.json").exists() and client.get_targetinfo("digits/1.0.0/bundle.tar") is None


def test_kills_and_restarts_leave_no_database_behind(data_dir: Path) -> None:
    # The server owns its PostgreSQL: a SIGKILLed server stops counting as its user, so after two kills in a
    # row the next start works on the same data, and its clean stop leaves nothing running.
    first = Server(data_dir)
    try:
        first.wait_ready()
        token = first.admin_token()
    finally:
        first.kill()
    second = Server(data_dir)
    try:
        second.wait_ready()
    finally:
        second.kill()
    third = Server(data_dir)
    try:
        third.wait_ready()
        assert third.call("GET", "/api/v1/devices", token)[0] == 200
    finally:
        third.stop()
    assert third.process.returncode == 0
    assert postmasters(data_dir / "postgres") == []
    assert not (data_dir / "postgres" / "postmaster.pid").exists()
    wait_until(lambda: not reapers(data_dir), 30, "the reaper to exit")


def test_a_killed_server_takes_its_database_along(data_dir: Path) -> None:
    server = Server(data_dir)
    try:
        server.wait_ready()
        assert len(postmasters(data_dir / "postgres")) == 1
    finally:
        server.kill()
    wait_until(lambda: not postmasters(data_dir / "postgres"), 30, "PostgreSQL to stop after its server was killed")
