"""First boot: read the provisioning file, enroll once, keep the device secret on /data, report a status.

Bad provisioning (missing file, wrong server, token already used, clock wrong) never stops the appliance:
it keeps classifying offline, says why on /healthz and in the log, and tries again with backoff.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import platform
import random
import socket
import ssl
import threading
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from contract.atomic import write_bytes_atomic, write_json_atomic
from device import backoff
from device.errors import DeviceAuthError, ServerRefusedError, ServerUnavailableError, StateError
from device.layout import DataLayout
from device.sync.client import ClientSettings, SyncClient
from device.sync.identity import Identity, attempt_key, load_identity, save_identity
from device.sync.retry import RetryPolicy

log = logging.getLogger(__name__)

# Where a provisioning file may be, first found wins: the state volume, the host directory the Raspberry Pi
# OS first-boot script moves it to (bind-mounted at the same path for containers), the boot partition.
SEARCH_PATHS = (
    str(DataLayout("").provision_drop),  # relative: under the data dir
    "/var/lib/tinymlops/provision/provision.json",
    "/boot/firmware/tinymlops/provision.json",
    "/boot/tinymlops/provision.json",
)
ENV_SERVER_URL, ENV_TOKEN, ENV_NAME = "TINYMLOPS_SERVER_URL", "TINYMLOPS_ENROLLMENT_TOKEN", "TINYMLOPS_DEVICE_NAME"
LOCAL_REASONS = ("not_provisioned", "invalid_file", "token_missing", "clock_wrong", "identity_unreadable")


@dataclass(frozen=True)
class ProvisionSettings:
    """Where provisioning, identity and status live, and how patiently to retry."""

    data_dir: Path  # the state volume (/data in the image)
    search: tuple[Path, ...]  # provisioning files, first found wins
    identity_path: Path  # device id + secret, shared with device.sync (SyncSettings.identity_path)
    status_path: Path  # the last status, for other processes (the updater, operators)
    root_path: Path  # the pinned TUF root the updater trusts
    initial_backoff_s: float = 5.0  # first wait after a failure
    max_backoff_s: float = 1800.0  # longest wait for remote failures (server, token)
    max_local_backoff_s: float = 60.0  # longest wait for local ones (no file yet, clock not set yet)
    clock_slack_s: float = 300.0  # a clock this much before the card was flashed is wrong
    client: ClientSettings = field(default_factory=lambda: ClientSettings(
        connect_timeout_s=10.0, read_timeout_s=20.0, request_timeout_s=30.0,
        retry=RetryPolicy(attempts=1),  # one request per attempt: this module's loop owns the backoff
    ))

    def __post_init__(self) -> None:
        if not 0 < self.initial_backoff_s <= min(self.max_backoff_s, self.max_local_backoff_s):
            raise ValueError("provisioning backoff: 0 < initial_backoff_s <= max_backoff_s, max_local_backoff_s")
        if self.clock_slack_s < 0:
            raise ValueError(f"clock_slack_s must be >= 0, got {self.clock_slack_s}")

    @classmethod
    def for_data_dir(cls, data_dir: str | Path, identity_path: str | None = None,
                     **overrides: Any) -> ProvisionSettings:
        """The standard layout under `data_dir` (`DataLayout`); a relative `identity_path` is under it."""
        layout = DataLayout(data_dir)
        return cls(data_dir=layout.root, search=tuple(layout.root / p for p in SEARCH_PATHS),
                   identity_path=layout.root / identity_path if identity_path else layout.identity,
                   status_path=layout.provisioning_status, root_path=layout.tuf_root, **overrides)


@dataclass(frozen=True)
class Provisioning:
    """One provisioning document (a file written by scripts/flash-device, or the environment on balena)."""

    server_url: str
    enrollment_token: str | None
    device_name: str | None
    created_at: datetime | None  # when the card was flashed: the device clock cannot be earlier
    source: str  # the file, or "environment"


@dataclass(frozen=True)
class ProvisioningStatus:
    """The outcome of the last attempt, as the health endpoint and the status file show it."""

    state: str  # enrolled | error
    reason: str  # enrolled, or why not: see LOCAL_REASONS and _enroll()
    detail: str
    attempts: int = 0
    device_id: str | None = None
    server_url: str | None = None
    next_retry_s: float | None = None
    updated_at: str = field(default_factory=lambda: datetime.now(UTC).isoformat(timespec="seconds"))

    def health(self) -> dict[str, Any]:
        """Flat fields for the health snapshot (/healthz, and /metrics for the numeric ones)."""
        fields = {"provisioning": self.state, "provisioning_reason": self.reason,
                  "provisioning_detail": self.detail, "provisioning_attempts": self.attempts,
                  "device_id": self.device_id}
        if self.next_retry_s is not None:
            fields["provisioning_next_retry_s"] = round(self.next_retry_s, 1)
        return fields


class _Blocked(Exception):  # noqa: N818 - control flow inside this module, never raised out of it
    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason, self.detail = reason, detail


def provisioning_from_environment(environ: Mapping[str, str]) -> dict[str, Any] | None:
    """A provisioning document from balena device variables, or None when they are not set."""
    url, token = environ.get(ENV_SERVER_URL, "").strip(), environ.get(ENV_TOKEN, "").strip()
    if not url and not token:
        return None
    return {"format": 1, "server_url": url, "enrollment_token": token or None,
            "device_name": environ.get(ENV_NAME) or None}


def parse_provisioning(data: Any, source: str) -> Provisioning:
    """Validate a provisioning document; `_Blocked("invalid_file")` names what is wrong."""
    if not isinstance(data, dict):
        raise _Blocked("invalid_file", f"{source}: not a JSON object")
    url = data.get("server_url")
    parts = urlsplit(url) if isinstance(url, str) else None
    if not isinstance(url, str) or parts is None or parts.scheme not in ("http", "https") or not parts.hostname:
        raise _Blocked("invalid_file", f"{source}: server_url must be an http(s) URL, got {url!r}")
    token = data.get("enrollment_token")
    if token is not None and not isinstance(token, str):
        raise _Blocked("invalid_file", f"{source}: enrollment_token must be a string")
    created = data.get("created_at")
    try:
        created_at = datetime.fromisoformat(created) if isinstance(created, str) else None
    except ValueError as exc:
        raise _Blocked("invalid_file", f"{source}: created_at is not an ISO 8601 time: {created!r}") from exc
    if created_at is not None and created_at.tzinfo is None:
        created_at = created_at.replace(tzinfo=UTC)
    name = data.get("device_name")
    return Provisioning(url.rstrip("/"), token or None, name if isinstance(name, str) and name else None,
                        created_at, source)


def read_provisioning(path: Path) -> Provisioning:
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise _Blocked("invalid_file", f"{path}: unreadable provisioning file: {exc}") from exc
    return parse_provisioning(data, str(path))


def read_status(status_path: Path) -> dict[str, Any] | None:
    """The last status written by a provisioner (for the updater and operators), None if there is none."""
    try:
        data = json.loads(status_path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def status_fields(status_path: Path) -> dict[str, Any]:
    """The health fields of the last written status, for a process that does not run the provisioner."""
    data = read_status(status_path)
    if data is None:
        return {"provisioning": "unknown"}
    try:
        return ProvisioningStatus(**data).health()
    except TypeError:
        return {"provisioning": "unknown"}


def hardware_facts(root: Path = Path("/")) -> dict[str, str | int | None]:
    """What the server records about the board (all scalars: the enrollment API takes nothing else)."""

    def read(path: str) -> str | None:
        try:
            return (root / path).read_text(errors="replace").replace("\x00", "").strip() or None
        except OSError:
            return None

    cpuinfo = read("proc/cpuinfo") or ""
    serial = next((line.split(":", 1)[1].strip() for line in cpuinfo.splitlines()
                   if line.lower().startswith("serial")), None)
    meminfo = (read("proc/meminfo") or "").split()
    try:
        version = metadata.version("tinymlops")
    except metadata.PackageNotFoundError:
        version = None
    return {"machine": platform.machine(), "model": read("proc/device-tree/model"), "serial": serial,
            "mem_kb": int(meminfo[1]) if len(meminfo) > 1 and meminfo[1].isdigit() else None,
            "kernel": platform.release(), "python": platform.python_version(), "tinymlops": version}


class Provisioner:
    """Enrolls the device once; `attempt()` is one try, `run()`/`start()` retry with backoff until enrolled."""

    def __init__(self, settings: ProvisionSettings, environment: Mapping[str, str] | None = None,
                 clock: Callable[[], datetime] = lambda: datetime.now(UTC),
                 rng: random.Random | None = None, hardware: dict[str, Any] | None = None) -> None:
        self.settings = settings
        self._environment = dict(environment or {})
        self._clock = clock
        self._rng = rng or random.Random()
        self._hardware = hardware
        self._failures = 0
        self._server_url: str | None = None  # of the provisioning found last
        self._status = ProvisioningStatus("error", "starting", "not tried yet")
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # ---- one attempt

    def attempt(self) -> ProvisioningStatus:
        """Try once; the status says what happened and when the next try is due (never raises for bad input)."""
        attempts = self._status.attempts + 1
        try:
            status = self._attempt(attempts)
            self._failures = 0
        except _Blocked as blocked:
            self._failures += 1
            delay = self.next_delay(blocked.reason)
            status = ProvisioningStatus("error", blocked.reason, blocked.detail, attempts, None, self._server_url,
                                        delay)
            level = logging.WARNING if blocked.reason != self._status.reason else logging.INFO
            log.log(level, "provisioning: %s: %s (attempt %d; next in %.0f s)", blocked.reason, blocked.detail,
                    attempts, delay)
        self._publish(status)
        return status

    def _attempt(self, attempts: int) -> ProvisioningStatus:
        try:
            identity = load_identity(self.settings.identity_path)
        except StateError as exc:
            raise _Blocked("identity_unreadable", f"{exc}: remove it and provision the device again") from exc
        if identity is not None:  # enrolled before: never spend a token twice, whatever the file says now
            try:
                found = self._find()
            except _Blocked:
                found = None
            if found is not None and found.enrollment_token:
                self._forget_token(found)
            url = found.server_url if found else (read_status(self.settings.status_path) or {}).get("server_url")
            return ProvisioningStatus("enrolled", "enrolled", f"device {identity.device_id}", attempts,
                                      identity.device_id, url)
        found = self._find()
        if found is None:
            looked = ", ".join(str(p) for p in self.settings.search)
            raise _Blocked("not_provisioned", f"no provisioning file (looked in {looked}) and no {ENV_SERVER_URL}")
        if not found.enrollment_token:
            raise _Blocked("token_missing", f"{found.source} has no enrollment_token and the device has no "
                                            "identity: provision it with a new token")
        self._check_clock(found)
        identity = self._enroll(found)
        save_identity(self.settings.identity_path, identity)
        log.info("provisioning: enrolled at %s as device %s", found.server_url, identity.device_id)
        self._pin_root(found)
        self._forget_token(found)
        return ProvisioningStatus("enrolled", "enrolled", f"device {identity.device_id}", attempts,
                                  identity.device_id, found.server_url)

    def _find(self) -> Provisioning | None:
        doc = provisioning_from_environment(self._environment)
        found = parse_provisioning(doc, "environment") if doc is not None else None
        for path in () if found else self.settings.search:
            if path.is_file():
                found = read_provisioning(path)
                break
        self._server_url = found.server_url if found else None
        return found

    def _check_clock(self, found: Provisioning) -> None:
        now = self._clock()
        if found.created_at is not None and (found.created_at - now).total_seconds() > self.settings.clock_slack_s:
            raise _Blocked("clock_wrong", f"the clock says {now.isoformat(timespec='seconds')}, before the card was "
                                          f"provisioned ({found.created_at.isoformat(timespec='seconds')}): "
                                          "waiting for network time (NTP)")

    def _enroll(self, found: Provisioning) -> Identity:
        assert found.enrollment_token is not None
        name = found.device_name or socket.gethostname()
        hardware = self._hardware if self._hardware is not None else hardware_facts()
        key = attempt_key(self.settings.identity_path)

        async def call() -> tuple[str, str]:
            async with SyncClient(found.server_url, self.settings.client) as client:
                return await client.enroll(found.enrollment_token or "", name, hardware, key)

        where = f"{found.server_url}/api/v1/devices/enroll"
        try:
            device_id, secret = asyncio.run(call())
        except DeviceAuthError as exc:
            raise _Blocked("token_rejected", f"{where} refused the enrollment token (HTTP {exc.status}: unknown, "
                                             "expired, already used, or not an enrollment token)") from exc
        except ServerRefusedError as exc:
            reason = "wrong_server" if exc.status in (404, 405) else "refused"
            hint = ": is server_url a TinySphere server?" if reason == "wrong_server" else ""
            raise _Blocked(reason, f"{where} answered HTTP {exc.status}{hint}") from exc
        except ServerUnavailableError as exc:
            if _clock_error(exc):
                raise _Blocked("clock_wrong", f"{where}: TLS certificate not valid at this device's time "
                                              f"{self._clock().isoformat(timespec='seconds')}: clock wrong?") from exc
            if exc.status is not None:
                raise _Blocked("server_error", f"{where} answered HTTP {exc.status}") from exc
            raise _Blocked("server_unreachable", f"{where}: {exc}") from exc
        except (KeyError, TypeError) as exc:
            raise _Blocked("wrong_server", f"{where} answered without device_id/device_secret: "
                                           "is server_url a TinySphere server?") from exc
        return Identity(device_id, secret)

    def _pin_root(self, found: Provisioning) -> None:
        """Copy root.json from beside the provisioning file to the TUF directory, unless one is pinned."""
        if found.source == "environment":
            return
        source, target = Path(found.source).with_name("root.json"), self.settings.root_path
        if not source.is_file():
            log.warning("provisioning: no root.json beside %s: model updates wait for a pinned TUF root", found.source)
        elif target.exists():
            if target.read_bytes() != source.read_bytes():
                log.warning("provisioning: %s differs from the pinned %s; keeping the pinned one", source, target)
        else:
            write_bytes_atomic(target, source.read_bytes())
            log.info("provisioning: pinned TUF root %s", target)

    def _forget_token(self, found: Provisioning) -> None:
        """Delete the spent token from the provisioning file (atomically; the rest stays for the record)."""
        if found.source == "environment":
            return
        path = Path(found.source)
        try:
            data = json.loads(path.read_text())
            data.pop("enrollment_token", None)
            data["enrolled_at"] = self._clock().isoformat(timespec="seconds")
            write_bytes_atomic(path, (json.dumps(data, indent=2) + "\n").encode())
            os.chmod(path, 0o600)
        except (OSError, ValueError) as exc:
            log.warning("provisioning: cannot delete the used enrollment token from %s: %s", path, exc)

    # ---- backoff, status

    def next_delay(self, reason: str) -> float:
        """Exponential backoff with jitter (between half and all of the step), capped by the kind of failure."""
        cap = self.settings.max_local_backoff_s if reason in LOCAL_REASONS else self.settings.max_backoff_s
        return backoff.next_delay(self._failures, self.settings.initial_backoff_s, cap, rng=self._rng)

    def _publish(self, status: ProvisioningStatus) -> None:
        previous = self._status
        with self._lock:
            self._status = status
        if (status.state, status.reason, status.detail) != (previous.state, previous.reason, previous.detail):
            try:
                write_json_atomic(self.settings.status_path, asdict(status))
            except OSError as exc:
                log.warning("provisioning: cannot write %s: %s", self.settings.status_path, exc)

    @property
    def status(self) -> ProvisioningStatus:
        with self._lock:
            return self._status

    def health(self) -> dict[str, Any]:
        """The fields to merge into the health snapshot."""
        return self.status.health()

    # ---- the retry loop

    def run(self, stop: threading.Event | None = None) -> ProvisioningStatus:
        """Attempt until enrolled or `stop` is set; returns the last status."""
        stop = stop or self._stop
        while True:
            status = self.attempt()
            if status.state == "enrolled" or stop.wait(status.next_retry_s or 0):
                return status

    def start(self, on_enrolled: Callable[[ProvisioningStatus], None] | None = None) -> Provisioner:
        """Run on a daemon thread; `on_enrolled(status)` is called there once the device is enrolled."""

        def main() -> None:
            status = self.run(self._stop)
            if status.state == "enrolled" and on_enrolled is not None:
                on_enrolled(status)

        self._thread = threading.Thread(target=main, name="provisioning", daemon=True)
        self._thread.start()
        return self

    def close(self, timeout: float = 10.0) -> None:
        """Stop retrying (a request in progress ends at its timeout)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)


def _clock_error(exc: BaseException) -> bool:
    """True if a TLS failure says the certificate is not yet (or no longer) valid: the device's clock is off."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, ssl.SSLCertVerificationError):
            message = (seen.verify_message or str(seen)).lower()
            return "not yet valid" in message or "expired" in message
        seen = seen.__cause__ or getattr(seen, "certificate_error", None)
    return False
