"""A stand-in for the Docker Engine API on a unix socket (there is no Docker engine on the test machines).

It serves the endpoints the Docker SDK for Python calls to find and restart a container, with the engine's
shapes: `GET /version` and `/_ping`, `GET /v<api>/containers/json` (the `all` flag and `label` filters),
`GET /v<api>/containers/{id}/json`, `POST /v<api>/containers/{id}/restart?t=N`. A container may own a real
process (`argv`): a restart stops it as the engine does (SIGTERM, SIGKILL after `t` seconds) and starts it anew.
"""

from __future__ import annotations

import hashlib
import json
import re
import signal
import socketserver
import subprocess
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

API_VERSION = "1.45"
_VERSIONED = re.compile(r"^/v\d+\.\d+(/.*)$")


@dataclass
class Container:
    """One container the stand-in knows; `argv`: the process it runs (None: nothing runs)."""

    id: str
    name: str
    labels: dict[str, str]
    argv: list[str] | None = None
    running: bool = True
    restarts: int = 0
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    def start(self) -> None:
        if self.argv is not None:
            self.process = subprocess.Popen(self.argv)
        self.running = True

    def stop(self, grace_s: float) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(grace_s)
            except subprocess.TimeoutExpired:
                self.process.kill()  # what the engine does after the grace period (a stopped process too)
                self.process.wait()
        self.running = False

    def summary(self) -> dict[str, Any]:
        """The entry of `GET /containers/json`."""
        return {"Id": self.id, "Names": [f"/{self.name}"], "Image": "tinymlops-device:armv7", "Labels": self.labels,
                "State": "running" if self.running else "exited",
                "Status": "Up 2 minutes" if self.running else "Exited (0)"}

    def inspect(self) -> dict[str, Any]:
        """`GET /containers/{id}/json`, the fields the SDK's Container model reads."""
        return {"Id": self.id, "Name": f"/{self.name}", "RestartCount": self.restarts,
                "Config": {"Labels": self.labels, "Image": "tinymlops-device:armv7"},
                "State": {"Status": "running" if self.running else "exited", "Running": self.running,
                          "Pid": self.process.pid if self.process else 0}}


class DockerEngineStandIn:
    """Serves `containers` at a unix socket; knobs: `restart_status` answers the next restarts with an error."""

    def __init__(self, socket_path: Path, containers: list[Container]) -> None:
        self.socket_path = socket_path
        self.containers = {c.id: c for c in containers}
        self.requests: list[tuple[str, str]] = []  # (method, path with query)
        self.restart_status: list[int] = []
        self._restarted: list[str] = []
        self._lock = threading.Lock()
        handler = self._handler()

        class Server(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
            daemon_threads = True

        self._server = Server(str(socket_path), handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def __enter__(self) -> DockerEngineStandIn:
        for container in self.containers.values():
            if container.running:
                container.start()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        for container in self.containers.values():
            container.stop(0)
        self.socket_path.unlink(missing_ok=True)

    def restarted(self) -> list[str]:
        """Names of the containers restarted so far (refused requests not counted), in order."""
        return list(self._restarted)

    def _lookup(self, ident: str) -> Container | None:
        """By id, unique id prefix or name, as the engine resolves them."""
        if ident in self.containers:
            return self.containers[ident]
        found = [c for c in self.containers.values() if c.name == ident.lstrip("/") or c.id.startswith(ident)]
        return found[0] if len(found) == 1 else None

    def _list(self, query: dict[str, list[str]]) -> list[dict[str, Any]]:
        filters = json.loads(query.get("filters", ["{}"])[0])
        wanted = filters.get("label", [])
        if isinstance(wanted, dict):  # the engine also takes {"key=value": true}
            wanted = [k for k, v in wanted.items() if v]
        show_all = query.get("all", ["0"])[0] in ("1", "true", "True")
        out = []
        for container in self.containers.values():
            if not (container.running or show_all):
                continue
            if all(_label_matches(container.labels, spec) for spec in wanted):
                out.append(container.summary())
        return out

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        engine = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:  # noqa: N802
                engine.requests.append(("GET", self.path))
                url = urlsplit(self.path)
                path, query = _unversioned(url.path), parse_qs(url.query)
                if path == "/_ping":
                    return self._send(200, b"OK", "text/plain")
                if path == "/version":
                    return self._json(200, {"Version": "27.0.0-standin", "ApiVersion": API_VERSION,
                                            "MinAPIVersion": "1.24", "Os": "linux", "Arch": "arm"})
                if path == "/containers/json":
                    return self._json(200, engine._list(query))
                match = re.match(r"^/containers/([^/]+)/json$", path)
                if match:
                    container = engine._lookup(match.group(1))
                    if container is None:
                        return self._json(404, {"message": f"No such container: {match.group(1)}"})
                    return self._json(200, container.inspect())
                return self._json(404, {"message": "page not found"})

            def do_POST(self) -> None:  # noqa: N802
                engine.requests.append(("POST", self.path))
                length = int(self.headers.get("Content-Length") or 0)
                if length:
                    self.rfile.read(length)
                url = urlsplit(self.path)
                match = re.match(r"^/containers/([^/]+)/restart$", _unversioned(url.path))
                if match is None:
                    return self._json(404, {"message": "page not found"})
                container = engine._lookup(match.group(1))
                if container is None:
                    return self._json(404, {"message": f"No such container: {match.group(1)}"})
                if engine.restart_status:
                    code = engine.restart_status.pop(0)
                    return self._json(code, {"message": f"stand-in refuses: {code}"})
                grace = float(parse_qs(url.query).get("t", ["10"])[0])
                with engine._lock:
                    container.stop(grace)
                    container.start()
                    container.restarts += 1
                    engine._restarted.append(container.name)
                return self._send(204, b"", None)

            def _json(self, code: int, body: Any) -> None:
                self._send(code, json.dumps(body).encode(), "application/json")

            def _send(self, code: int, body: bytes, content_type: str | None) -> None:
                self.send_response(code)
                if content_type:
                    self.send_header("Content-Type", content_type)
                self.send_header("Api-Version", API_VERSION)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if body:
                    self.wfile.write(body)

            def address_string(self) -> str:  # a unix socket has no peer address
                return "unix"

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
                pass

        return Handler


def _unversioned(path: str) -> str:
    match = _VERSIONED.match(path)
    return match.group(1) if match else path


def _label_matches(labels: dict[str, str], spec: str) -> bool:
    key, sep, value = spec.partition("=")
    return key in labels and (not sep or labels[key] == value)


def container_id(name: str) -> str:
    """A 64-hex id derived from a name, as the engine's ids look."""
    return hashlib.sha256(name.encode()).hexdigest()
