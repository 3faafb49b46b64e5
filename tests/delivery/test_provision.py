"""First boot (`device.provision`) against the real TinySphere app over loopback, and against what a
device meets when provisioning is wrong: no file, a bad file, another web server, no server, a wrong clock."""

from __future__ import annotations

import json
import random
import ssl
import stat
import threading
import urllib.request
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from device.health import HealthServer, prometheus
from device.provision import (
    SEARCH_PATHS,
    Provisioner,
    ProvisionSettings,
    hardware_facts,
    provisioning_from_environment,
    read_status,
    status_fields,
)
from device.sync.identity import load_identity
from tests.delivery.images import tuf_root
from tests.delivery.server_api import get_device
from tests.utils.net import free_port
from tests.utils.wait import wait_until

HARDWARE = {"machine": "armv7l", "model": "Raspberry Pi Zero 2 W Rev 1.0", "serial": "00000000abcdef01"}
FLASHED = datetime(2026, 11, 27, 9, 0, tzinfo=UTC)


def settings(data_dir: Path, **overrides: Any) -> ProvisionSettings:
    """The standard layout, but looking only inside the test's data dir, with fast backoff."""
    base = ProvisionSettings.for_data_dir(data_dir, initial_backoff_s=0.01, max_backoff_s=0.08,
                                          max_local_backoff_s=0.04, **overrides)
    return ProvisionSettings(**{**base.__dict__, "search": (data_dir / SEARCH_PATHS[0],)})


def provisioner(data_dir: Path, now: datetime = FLASHED + timedelta(minutes=3), **kwargs: Any) -> Provisioner:
    return Provisioner(settings(data_dir), clock=lambda: now, rng=random.Random(0), hardware=HARDWARE, **kwargs)


def write_provisioning(data_dir: Path, server_url: str, token: str | None, root: bool = True,
                       **extra: Any) -> Path:
    """What scripts/flash-device writes and the first-boot script moves under the data dir."""
    folder = data_dir / "provision"
    folder.mkdir(parents=True, exist_ok=True)
    doc = {"format": 1, "server_url": server_url, "enrollment_token": token, "device_name": "tiny-01",
           "created_at": FLASHED.isoformat(), **extra}
    path = folder / "provision.json"
    path.write_text(json.dumps(doc))
    path.chmod(0o600)
    if root:
        tuf_root(folder / "root.json")
    return path


class OtherServer:
    """A web server that is not TinySphere: answers every request with one status, counts them."""

    def __init__(self, status: int, body: bytes = b"<html>nothing here</html>") -> None:
        self.requests = 0
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
                outer.requests += 1
                self.rfile.read(int(self.headers.get("Content-Length", 0)))
                self.send_response(status)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def other_server() -> Iterator[Callable[..., OtherServer]]:
    started: list[OtherServer] = []

    def start(status: int, body: bytes = b"<html>nothing here</html>") -> OtherServer:
        started.append(OtherServer(status, body))
        return started[-1]

    yield start
    for server in started:
        server.close()


# ---- enrollment against the real server ----

def test_first_boot_enrolls_once_and_keeps_the_secret_private(
    tmp_path: Path, server_url: str, operator: str, new_enrollment_token: Callable[..., str]
) -> None:
    token = new_enrollment_token(tags=["lab"])
    provision = write_provisioning(tmp_path, server_url, token)
    status = provisioner(tmp_path).attempt()
    assert status.state == "enrolled" and status.reason == "enrolled" and status.server_url == server_url

    identity = load_identity(tmp_path / "state" / "sync_identity.json")
    assert identity is not None and identity.device_id == status.device_id and identity.secret.startswith("tsd_")
    assert stat.S_IMODE((tmp_path / "state" / "sync_identity.json").stat().st_mode) == 0o600

    left = json.loads(provision.read_text())
    assert "enrollment_token" not in left and left["server_url"] == server_url and left["enrolled_at"]
    assert stat.S_IMODE(provision.stat().st_mode) == 0o600
    assert (tmp_path / "tuf" / "root.json").read_bytes() == (provision.parent / "root.json").read_bytes()
    assert read_status(tmp_path / "state" / "provisioning.json")["device_id"] == identity.device_id

    device = get_device(server_url, identity.device_id, identity.secret)
    assert device["name"] == "tiny-01" and device["tags"] == ["lab"]
    assert device["hardware"]["model"] == HARDWARE["model"]


def test_a_later_boot_needs_neither_token_nor_network(
    tmp_path: Path, server_url: str, new_enrollment_token: Callable[..., str]
) -> None:
    write_provisioning(tmp_path, server_url, new_enrollment_token())
    first = provisioner(tmp_path).attempt()
    (tmp_path / "provision" / "provision.json").write_text(json.dumps(
        {"server_url": f"http://127.0.0.1:{free_port()}", "enrollment_token": "tse_other"}))
    again = provisioner(tmp_path).attempt()
    assert again.state == "enrolled" and again.device_id == first.device_id
    assert "enrollment_token" not in json.loads((tmp_path / "provision" / "provision.json").read_text())


def test_enrolled_device_ignores_a_broken_file(
    tmp_path: Path, server_url: str, new_enrollment_token: Callable[..., str]
) -> None:
    write_provisioning(tmp_path, server_url, new_enrollment_token())
    assert provisioner(tmp_path).attempt().state == "enrolled"
    (tmp_path / "provision" / "provision.json").write_text("{torn write")
    assert provisioner(tmp_path).attempt().state == "enrolled"


def test_token_already_used(tmp_path: Path, server_url: str, new_enrollment_token: Callable[..., str]) -> None:
    token = new_enrollment_token()
    write_provisioning(tmp_path / "a", server_url, token)
    assert provisioner(tmp_path / "a").attempt().state == "enrolled"
    write_provisioning(tmp_path / "b", server_url, token)  # a second card flashed with the same token
    device = provisioner(tmp_path / "b")
    status = device.attempt()
    assert (status.state, status.reason) == ("error", "token_rejected")
    assert "HTTP 401" in status.detail and "already used" in status.detail
    assert status.next_retry_s is not None and status.next_retry_s > 0
    assert not (tmp_path / "b" / "state" / "sync_identity.json").exists()
    assert json.loads((tmp_path / "b" / "provision" / "provision.json").read_text())["enrollment_token"] == token


def test_operator_token_instead_of_enrollment_token(tmp_path: Path, server_url: str, operator: str) -> None:
    write_provisioning(tmp_path, server_url, operator)
    status = provisioner(tmp_path).attempt()
    assert (status.reason, "HTTP 403" in status.detail) == ("token_rejected", True)


def test_expired_token(tmp_path: Path, server_url: str, new_enrollment_token: Callable[..., str],
                       enrollment_backends: Any) -> None:
    from sqlalchemy import update

    from server.db.models import EnrollmentToken
    from server.identity import token_hash

    token = new_enrollment_token()
    with enrollment_backends.sessions() as session:
        session.execute(update(EnrollmentToken).where(EnrollmentToken.token_hash == token_hash(token))
                        .values(expires_at=datetime.now(UTC) - timedelta(minutes=1)))
        session.commit()
    write_provisioning(tmp_path, server_url, token)
    assert provisioner(tmp_path).attempt().reason == "token_rejected"


def test_retries_until_a_provisioning_file_appears(
    tmp_path: Path, server_url: str, new_enrollment_token: Callable[..., str]
) -> None:
    device = provisioner(tmp_path)
    enrolled: list[str] = []
    device.start(on_enrolled=lambda status: enrolled.append(status.device_id or ""))
    try:
        wait_until(lambda: device.status.attempts >= 3, 4, "three provisioning attempts", interval=0.01)
        assert device.status.reason == "not_provisioned" and device.status.attempts >= 3
        write_provisioning(tmp_path, server_url, new_enrollment_token())
        wait_until(lambda: enrolled, 10, "the enrollment", interval=0.01)
    finally:
        device.close()
    assert enrolled and device.status.state == "enrolled" and enrolled[0] == device.status.device_id


# ---- bad provisioning: clear status, backoff ----

def test_missing_file(tmp_path: Path) -> None:
    device = provisioner(tmp_path)
    status = device.attempt()
    assert (status.state, status.reason) == ("error", "not_provisioned")
    assert str(tmp_path / "provision" / "provision.json") in status.detail
    assert read_status(tmp_path / "state" / "provisioning.json")["reason"] == "not_provisioned"


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("{not json", "unreadable provisioning file"),
        ("[]", "not a JSON object"),
        (json.dumps({"enrollment_token": "tse_x"}), "server_url must be an http(s) URL"),
        (json.dumps({"server_url": "fleet.example.org", "enrollment_token": "tse_x"}), "server_url must be"),
        (json.dumps({"server_url": "https://fleet.example.org", "enrollment_token": 5}), "must be a string"),
        (json.dumps({"server_url": "https://fleet.example.org", "created_at": "yesterday"}), "created_at"),
    ],
)
def test_invalid_file(tmp_path: Path, content: str, message: str) -> None:
    (tmp_path / "provision").mkdir()
    (tmp_path / "provision" / "provision.json").write_text(content)
    status = provisioner(tmp_path).attempt()
    assert status.reason == "invalid_file" and message in status.detail


def test_token_missing_without_identity(tmp_path: Path, other_server: Callable[..., OtherServer]) -> None:
    server = other_server(500)
    write_provisioning(tmp_path, server.url, None)
    status = provisioner(tmp_path).attempt()
    assert status.reason == "token_missing" and "new token" in status.detail and server.requests == 0


def test_wrong_server_another_web_server(tmp_path: Path, other_server: Callable[..., OtherServer]) -> None:
    server = other_server(404)
    write_provisioning(tmp_path, server.url, "tse_token")
    status = provisioner(tmp_path).attempt()
    assert (status.reason, server.requests) == ("wrong_server", 1)
    assert "HTTP 404" in status.detail and "TinySphere" in status.detail
    assert status.server_url == server.url


def test_wrong_server_answering_something_else(tmp_path: Path, other_server: Callable[..., OtherServer]) -> None:
    server = other_server(200, b'{"hello": "world"}')
    write_provisioning(tmp_path, server.url, "tse_token")
    assert provisioner(tmp_path).attempt().reason == "wrong_server"


def test_server_unreachable(tmp_path: Path) -> None:
    write_provisioning(tmp_path, f"http://127.0.0.1:{free_port()}", "tse_token")
    status = provisioner(tmp_path).attempt()
    assert status.reason == "server_unreachable" and "/api/v1/devices/enroll" in status.detail


def test_server_error_is_retried(tmp_path: Path, other_server: Callable[..., OtherServer]) -> None:
    server = other_server(503)
    write_provisioning(tmp_path, server.url, "tse_token")
    device = provisioner(tmp_path)
    first, second = device.attempt(), device.attempt()
    assert (first.reason, second.reason, server.requests) == ("server_error", "server_error", 2)
    assert second.attempts == 2


def test_clock_wrong_waits_without_a_request(tmp_path: Path, other_server: Callable[..., OtherServer]) -> None:
    server = other_server(500)
    write_provisioning(tmp_path, server.url, "tse_token")
    status = provisioner(tmp_path, now=datetime(1970, 1, 1, tzinfo=UTC)).attempt()
    assert status.reason == "clock_wrong" and "NTP" in status.detail and "1970-01-01" in status.detail
    assert server.requests == 0
    assert status.next_retry_s is not None and status.next_retry_s <= settings(tmp_path).max_local_backoff_s


def test_clock_slightly_behind_is_fine(tmp_path: Path, other_server: Callable[..., OtherServer]) -> None:
    server = other_server(503)
    write_provisioning(tmp_path, server.url, "tse_token")
    status = provisioner(tmp_path, now=FLASHED - timedelta(minutes=2)).attempt()
    assert status.reason == "server_error" and server.requests == 1


def test_certificate_not_yet_valid_means_clock_wrong() -> None:
    from device.errors import ServerUnavailableError
    from device.provision import _clock_error

    cert = ssl.SSLCertVerificationError(1, "certificate verify failed")
    cert.verify_message = "certificate is not yet valid"
    wrapped = ServerUnavailableError("POST /devices/enroll: ClientConnectorCertificateError")
    wrapped.__cause__ = RuntimeError("aiohttp")
    wrapped.__cause__.__cause__ = cert
    assert _clock_error(wrapped)
    cert.verify_message = "self-signed certificate"
    assert not _clock_error(wrapped)
    assert not _clock_error(ServerUnavailableError("timeout"))


def test_backoff_grows_with_jitter_up_to_its_cap(tmp_path: Path) -> None:
    write_provisioning(tmp_path, f"http://127.0.0.1:{free_port()}", "tse_token", root=False)
    device = Provisioner(settings(tmp_path), rng=random.Random(3), hardware=HARDWARE)
    delays = [device.attempt().next_retry_s for _ in range(6)]
    steps = [0.01, 0.02, 0.04, 0.08, 0.08, 0.08]  # initial * 2**n, capped at max_backoff_s
    assert all(d is not None and step / 2 <= d <= step for d, step in zip(delays, steps, strict=True))
    assert len(set(delays)) == len(delays)  # jittered: a fleet rebooting together spreads out


def test_status_is_written_only_when_it_changes(tmp_path: Path) -> None:
    device = provisioner(tmp_path)
    device.attempt()
    path = tmp_path / "state" / "provisioning.json"
    written = path.stat().st_mtime_ns
    path.write_text(json.dumps({"marker": True}))  # a rewrite would replace this
    device.attempt()
    assert json.loads(path.read_text()) == {"marker": True}
    assert written


# ---- balena: the environment instead of a file ----

def test_environment_provisioning(tmp_path: Path, server_url: str, new_enrollment_token: Callable[..., str]) -> None:
    assert provisioning_from_environment({}) is None
    env = {"TINYMLOPS_SERVER_URL": server_url, "TINYMLOPS_ENROLLMENT_TOKEN": new_enrollment_token(),
           "TINYMLOPS_DEVICE_NAME": "balena-7"}
    status = provisioner(tmp_path, environment=env).attempt()
    assert status.state == "enrolled"
    assert provisioner(tmp_path, environment=env).attempt().device_id == status.device_id  # token not reused


# ---- the health endpoint ----

def test_status_on_the_health_endpoint(tmp_path: Path) -> None:
    device = provisioner(tmp_path)
    device.attempt()
    health = HealthServer(lambda: {"status": "ok", "frames": 3, **device.health()}, 0).start()
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{health.port}/healthz", timeout=5) as response:
            body = json.loads(response.read())
    finally:
        health.close()
    assert body["status"] == "ok"  # inference goes on offline
    assert body["provisioning"] == "error" and body["provisioning_reason"] == "not_provisioned"
    assert body["provisioning_attempts"] == 1 and body["provisioning_next_retry_s"] >= 0
    assert "tinylcm_provisioning_attempts_total 1.0\n" in prometheus(body)
    # another process (the updater) reads the same from the status file
    from_file = status_fields(tmp_path / "state" / "provisioning.json")
    assert from_file["provisioning_reason"] == "not_provisioned" and from_file["provisioning_attempts"] == 1
    assert status_fields(tmp_path / "missing.json") == {"provisioning": "unknown"}


def test_hardware_facts_from_a_pi(tmp_path: Path) -> None:
    (tmp_path / "proc" / "device-tree").mkdir(parents=True)
    (tmp_path / "proc" / "device-tree" / "model").write_bytes(b"Raspberry Pi Zero 2 W Rev 1.0\x00")
    (tmp_path / "proc" / "cpuinfo").write_text("processor\t: 0\nHardware\t: BCM2835\nSerial\t\t: 00000000abcdef01\n")
    (tmp_path / "proc" / "meminfo").write_text("MemTotal:         439592 kB\n")
    facts = hardware_facts(tmp_path)
    assert facts["model"] == "Raspberry Pi Zero 2 W Rev 1.0" and facts["serial"] == "00000000abcdef01"
    assert facts["mem_kb"] == 439592
    assert all(v is None or isinstance(v, str | int) for v in facts.values())


def test_settings_reject_bad_backoff(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="backoff"):
        ProvisionSettings.for_data_dir(tmp_path, initial_backoff_s=0)
