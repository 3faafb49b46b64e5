"""The inference container on a plain Docker host: found by its compose service label and restarted through
the Docker Engine API on the mounted socket, with the Docker SDK (imported only when a restart is due).
"""

from __future__ import annotations

import logging
import os
import stat
from pathlib import Path
from typing import Any

from device.errors import ServerRefusedError, ServerUnavailableError

log = logging.getLogger(__name__)

DOCKER_SOCKET = Path("/var/run/docker.sock")
SERVICE_LABEL = "com.docker.compose.service"
PROJECT_LABEL = "com.docker.compose.project"


def is_socket(path: Path) -> bool:
    """True if `path` is a unix socket (a mounted Docker socket), without talking to it."""
    try:
        return stat.S_ISSOCK(os.stat(path).st_mode)
    except OSError:
        return False


class DockerRestarter:
    """Restarts the containers of one compose service (of one project, if given) through the Docker socket."""

    def __init__(self, socket_path: Path = DOCKER_SOCKET, service: str = "inference", project: str | None = None,
                 stop_timeout_s: int = 10, timeout_s: float = 10.0) -> None:
        if stop_timeout_s < 0 or timeout_s <= 0:
            raise ValueError("docker restarter: stop_timeout_s >= 0 and timeout_s > 0 required")
        self.socket_path, self.service, self.project = Path(socket_path), service, project
        self.stop_timeout_s, self.timeout_s = stop_timeout_s, timeout_s

    @property
    def base_url(self) -> str:
        return f"unix://{self.socket_path}"

    def restart(self) -> None:
        """Restart the service's container(s). Raises `ServerUnavailableError` when the engine cannot be reached
        or fails, `ServerRefusedError` when it refuses or no container matches."""
        import docker  # here, not at module level: the updater pays for the SDK only on a host that needs it
        from docker.errors import APIError, DockerException

        try:
            client = docker.DockerClient(base_url=self.base_url, timeout=int(self.timeout_s))
        except DockerException as exc:
            raise ServerUnavailableError(f"Docker engine unreachable at {self.base_url}: {exc}") from exc
        try:
            containers = self._find(client)
            for container in containers:
                log.warning("watchdog: restarting container %s (%s) through %s", container.name,
                            container.short_id, self.base_url)
                container.restart(timeout=self.stop_timeout_s)
        except APIError as exc:
            status = int(exc.status_code or 0)
            message = f"Docker engine at {self.base_url}: HTTP {status}: {exc.explanation or exc}"
            if status >= 500 or status == 0:
                raise ServerUnavailableError(message, status=status or None) from exc
            raise ServerRefusedError(message, status) from exc
        except (DockerException, OSError) as exc:  # requests' errors are OSErrors: socket gone, refused, timeout
            raise ServerUnavailableError(f"Docker engine unreachable at {self.base_url}: {exc}") from exc
        finally:
            client.close()

    def _find(self, client: Any) -> list[Any]:
        labels = [f"{SERVICE_LABEL}={self.service}"]
        if self.project:
            labels.append(f"{PROJECT_LABEL}={self.project}")
        found = client.containers.list(all=True, filters={"label": labels})
        where = f"label {' and '.join(labels)}"
        if not found:
            raise ServerRefusedError(f"no container on {self.base_url} carries the {where}", 404)
        projects = sorted({str(c.labels.get(PROJECT_LABEL)) for c in found})
        if len(projects) > 1:
            raise ServerRefusedError(f"containers of {len(projects)} compose projects ({', '.join(projects)}) carry "
                                     f"the {where}: name the project (--compose-project)", 409)
        return list(found)
