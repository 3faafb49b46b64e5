"""The operator's HTTP client for the registry API (`tinysphere keys ... / bundle publish --server`)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any
from urllib.parse import quote

import urllib3

from server.errors import InputError, RemoteError

_SERVICE = "tinysphere server"


class RegistryClient:
    """Talks to one server with an operator token; timeouts everywhere, jittered retries on idempotent calls."""

    def __init__(self, url: str, token: str, timeout_s: float = 30.0) -> None:
        self.url = url.rstrip("/")
        retries = urllib3.Retry(total=3, backoff_factor=0.5, backoff_jitter=0.5, status_forcelist=(502, 503, 504),
                                allowed_methods=frozenset({"GET", "PUT"}), raise_on_status=False)
        self._http = urllib3.PoolManager(timeout=urllib3.Timeout(connect=timeout_s, read=timeout_s), retries=retries)
        self._headers = {"Authorization": f"Bearer {token}"}

    def _request(self, method: str, path: str, **kwargs: Any) -> urllib3.BaseHTTPResponse:
        headers = {**self._headers, **kwargs.pop("headers", {})}
        try:
            response = self._http.request(method, self.url + path, headers=headers, **kwargs)
        except urllib3.exceptions.HTTPError as exc:
            raise RemoteError(str(exc), _SERVICE) from exc
        if response.status >= 500:
            raise RemoteError(f"{method} {path}: HTTP {response.status} {response.data[:300]!r}", _SERVICE)
        if response.status >= 400 and response.status != 404:
            raise InputError(f"{method} {path}: HTTP {response.status}: {_detail(response)}")
        return response

    def metadata(self, role: str) -> bytes | None:
        """The server's newest metadata of a role, or None if it has none."""
        response = self._request("GET", f"/api/v1/registry/metadata/{role}")
        return None if response.status == 404 else response.data

    def upload(self, target_path: str, tar: Path, sha256: str) -> None:
        """Upload a bundle tar (the server stores it under its content hash)."""
        with tar.open("rb") as body:
            response = self._request("PUT", f"/api/v1/registry/uploads/{quote(target_path)}", body=body,
                                     headers={"X-Content-SHA256": sha256, "Content-Type": "application/x-tar",
                                              "Content-Length": str(tar.stat().st_size)})
        if response.status == 404:
            raise InputError(f"upload refused: {_detail(response)}")

    def send(self, method: str, path: str, payload: dict[str, Any]) -> Any:
        """A JSON request; the decoded answer."""
        response = self._request(method, path, body=json.dumps(payload).encode(),
                                 headers={"Content-Type": "application/json"})
        if response.status == 404:
            raise InputError(f"{path}: {_detail(response)}")
        return json.loads(response.data)


def _detail(response: urllib3.BaseHTTPResponse) -> str:
    """The readable part of an error answer: the problem's `detail` (RFC 9457), else the start of the body."""
    try:
        problem = json.loads(response.data)
    except ValueError:
        problem = None
    if isinstance(problem, dict) and (problem.get("detail") or problem.get("title")):
        return str(problem.get("detail") or problem.get("title"))
    return repr(response.data[:300])
