"""`SyncClient`: the one transport between a device and the server (aiohttp, `/api/v1`).

Every request has connect, read and total timeouts and goes through the retry policy; HTTP answers
become the device's errors here and nowhere else. aiohttp is imported when a client opens its session: a
device waiting to be provisioned holds this module (through the provisioner) without loading it.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from device.errors import (
    DeviceAuthError,
    PackageConflictError,
    PackageTooLargeError,
    ServerRefusedError,
    ServerUnavailableError,
)
from device.sync.package import Package
from device.sync.retry import RetryPolicy, parse_retry_after, retrying

if TYPE_CHECKING:
    import aiohttp

log = logging.getLogger(__name__)
API = "/api/v1"
_REFUSED: dict[int, type[ServerRefusedError]] = {
    401: DeviceAuthError, 403: DeviceAuthError, 409: PackageConflictError, 413: PackageTooLargeError,
}


@dataclass(frozen=True)
class ClientSettings:
    connect_timeout_s: float = 10.0  # TCP + TLS handshake
    read_timeout_s: float = 30.0  # longest silence while waiting for the answer
    request_timeout_s: float = 120.0  # one whole request, upload included
    retry: RetryPolicy = field(default_factory=RetryPolicy)

    def __post_init__(self) -> None:
        if min(self.connect_timeout_s, self.read_timeout_s, self.request_timeout_s) <= 0:
            raise ValueError("sync timeouts must be > 0")


@dataclass(frozen=True)
class Reply:
    status: int
    body: Any  # decoded JSON, or None


class SyncClient:
    """Talks to one server as one device; use as `async with SyncClient(...) as client`."""

    def __init__(self, base_url: str, settings: ClientSettings | None = None, secret: str | None = None) -> None:
        self.base_url = base_url.rstrip("/")
        self.settings = settings or ClientSettings()
        self.secret = secret
        self._session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> SyncClient:
        import aiohttp

        s = self.settings
        timeout = aiohttp.ClientTimeout(total=s.request_timeout_s, sock_connect=s.connect_timeout_s,
                                        sock_read=s.read_timeout_s)
        self._session = aiohttp.ClientSession(timeout=timeout, raise_for_status=False)
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def enroll(self, token: str, name: str | None, hardware: dict[str, Any],
                     attempt_key: str | None = None) -> tuple[str, str]:
        """Exchange a one-time enrollment token for (device_id, device secret); `attempt_key` makes it repeatable."""
        body = {"hardware": hardware, **({"name": name} if name else {}),
                **({"attempt_key": attempt_key} if attempt_key else {})}
        reply = await self.request("POST", "/devices/enroll", json_body=body, token=token)
        return str(reply.body["device_id"]), str(reply.body["device_secret"])

    async def put_package(self, package: Package) -> bool:
        """Upload a package (idempotent by id); True if the server stored it now, False if it had it.

        Only an answer naming this package's id, its device and its SHA-256 acknowledges it; any other
        answer raises `PackageConflictError`, as a 409 does: the server holds something else under the id.
        """
        headers = {"Content-Type": "application/gzip", "X-Content-SHA256": package.sha256}
        path = f"/sync/packages/{package.package_id}"
        reply = await self.request("PUT", path, data=package.body, headers=headers)
        body = reply.body if isinstance(reply.body, dict) else {}
        named = (body.get("id"), body.get("device_id"), body.get("sha256"))
        if named != (package.package_id, package.device_id, package.sha256):
            raise PackageConflictError(f"PUT {path}: HTTP {reply.status} acknowledges {named}, not this device's "
                                       f"package {package.sha256[:12]}", reply.status)
        return reply.status == 201

    async def heartbeat(self, device_id: str, report: dict[str, Any]) -> dict[str, Any]:
        """Send a heartbeat; the answer carries `desired` state and `labels`."""
        reply = await self.request("POST", f"/devices/{device_id}/heartbeat", json_body=report)
        return dict(reply.body or {})

    async def request(self, method: str, path: str, *, json_body: Any = None, data: bytes | None = None,
                      headers: dict[str, str] | None = None, token: str | None = None) -> Reply:
        """One API request with retries; raises `ServerUnavailableError` or `ServerRefusedError`."""
        async for attempt in retrying(self.settings.retry):
            with attempt:
                return await self._once(method, path, json_body, data, headers or {}, token)
        raise AssertionError("unreachable: tenacity re-raises the last error")

    async def _once(self, method: str, path: str, json_body: Any, data: bytes | None, headers: dict[str, str],
                    token: str | None) -> Reply:
        import aiohttp  # loaded with the session already

        if self._session is None:
            raise RuntimeError("SyncClient used outside `async with`")
        bearer = token or self.secret
        if bearer:
            headers = {**headers, "Authorization": f"Bearer {bearer}"}
        url = f"{self.base_url}{API}{path}"
        try:
            async with self._session.request(method, url, json=json_body, data=data, headers=headers) as resp:
                raw = await resp.read()
                return _reply(method, path, resp.status, resp.headers.get("Retry-After"), raw,
                              resp.headers.get("X-Request-ID"))
        except (TimeoutError, aiohttp.ClientError) as exc:
            log.info("%s %s failed: %s", method, path, exc.__class__.__name__)
            raise ServerUnavailableError(f"{method} {path}: {exc.__class__.__name__}: {exc}") from exc


def _reply(method: str, path: str, status: int, retry_after: str | None, raw: bytes,
           request_id: str | None = None) -> Reply:
    """Map an HTTP answer to a `Reply` or the device's error for it.

    An error names the server's id for the request (`X-Request-ID`), which finds the server's log lines of it."""
    if 200 <= status < 300:
        try:
            return Reply(status, json.loads(raw) if raw else None)
        except ValueError as exc:  # a truncated or mangled body: the request may have worked, ask again
            raise ServerUnavailableError(f"{method} {path}: unreadable answer", status) from exc
    detail = raw[:300].decode("utf-8", "replace")
    if request_id:
        detail += f" [request {request_id[:128]!r}]"
    if status in (408, 429) or status >= 500:
        log.info("%s %s answered %d (Retry-After %s, request %r)", method, path, status, retry_after, request_id)
        after = parse_retry_after(retry_after)
        raise ServerUnavailableError(f"{method} {path}: HTTP {status}: {detail}", status, after)
    raise _REFUSED.get(status, ServerRefusedError)(f"{method} {path}: HTTP {status}: {detail}", status)
