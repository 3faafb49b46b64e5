"""The server as an operator sees it: enrollment tokens, the pinned TUF root, the fleet's view of the run."""

from __future__ import annotations

import json
import urllib.parse
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import urllib3

from simulator.spec import SimulationError

# one try per call (the simulator reports a failure rather than retrying it), redirects followed; as many
# connections to the server as the threads asking for enrollment tokens
_HTTP = urllib3.PoolManager(maxsize=8, retries=urllib3.Retry(total=None, connect=False, read=False, other=0,
                                                             redirect=10, respect_retry_after_header=False))


class OperatorAPI:
    """`/api/v1` and `/tuf` with an operator token, over urllib3 (the simulator's only server calls)."""

    def __init__(self, url: str, token: str, timeout_s: float = 30.0) -> None:
        parsed = urllib.parse.urlsplit(url)
        if parsed.scheme not in ("http", "https") or not parsed.netloc:
            raise SimulationError(f"bad --server {url!r}: use http://HOST:PORT or https://HOST")
        if not token:
            raise SimulationError("no operator token: pass --token or set TINYSPHERE_TOKEN")
        self.url = url.rstrip("/")
        self.token = token
        self.timeout_s = timeout_s

    def _call(self, method: str, path: str, body: Any = None) -> bytes:
        try:
            response = _HTTP.request(
                method, self.url + path, body=None if body is None else json.dumps(body).encode(),
                headers={"Authorization": f"Bearer {self.token}", "Content-Type": "application/json"},
                timeout=self.timeout_s)
        except (urllib3.exceptions.HTTPError, OSError, ValueError) as exc:
            raise SimulationError(f"{method} {path}: cannot reach {self.url}: {exc}") from exc
        if response.status >= 400:
            detail = _problem_detail(response.data[:2000])
            hint = " (is the token an operator token?)" if response.status in (401, 403) else ""
            raise SimulationError(f"{method} {path}: HTTP {response.status}{hint}: {detail}")
        return bytes(response.data)

    def json(self, method: str, path: str, body: Any = None) -> Any:
        raw = self._call(method, path, body)
        return json.loads(raw) if raw else None

    def enrollment_tokens(self, count: int, tags: list[str], ttl_s: int = 3600) -> list[str]:
        """`count` one-time tokens; each device enrolls once with its own."""
        def one(_: int) -> str:
            return str(self.json("POST", "/api/v1/enrollment-tokens", {"ttl_s": ttl_s, "tags": tags})["token"])

        with ThreadPoolExecutor(8) as pool:
            return list(pool.map(one, range(count)))

    def root(self) -> bytes:
        """Root v1 of the server's TUF repository: what provisioning pins on a real card."""
        return self._call("GET", "/tuf/metadata/1.root.json")

    def devices(self, tag: str) -> list[dict[str, Any]]:
        """Every device carrying `tag`, as the fleet API lists them."""
        out: list[dict[str, Any]] = []
        while True:
            page = self.json("GET", f"/api/v1/devices?tag={urllib.parse.quote(tag)}&limit=500&offset={len(out)}")
            out.extend(page["items"])
            if not page["items"] or len(out) >= page["count"]:
                return out


def _problem_detail(body: bytes) -> str:
    """The readable part of an error answer: the problem's `detail` (RFC 9457), else the body as text."""
    try:
        problem = json.loads(body)
    except ValueError:
        problem = None
    if isinstance(problem, dict) and (problem.get("detail") or problem.get("title")):
        return str(problem.get("detail") or problem.get("title"))
    return body.decode(errors="replace")
