"""The plain-Docker variant of the device services: the Docker socket reaches the updater, and only it."""

from __future__ import annotations

import json
import os
import subprocess

from tests.delivery.test_container import COMPOSE, ROOT, tool

PLAIN = ROOT / "docker-compose.plain-docker.yml"


def config(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([tool("docker-compose"), "-f", str(COMPOSE), "-f", str(PLAIN), "-p", "tinymlops", "config",
                           "--format", "json"], capture_output=True, text=True, timeout=60, cwd=ROOT,
                          env={**{k: v for k, v in os.environ.items() if k != "DOCKER_GID"}, **env})


def test_the_socket_is_mounted_into_the_updater_only() -> None:
    done = config({"DOCKER_GID": "995"})
    assert done.returncode == 0, done.stderr
    services = json.loads(done.stdout)["services"]
    mounts = {name: sorted((v["source"], v["target"]) for v in s["volumes"]) for name, s in services.items()}
    assert mounts == {"inference": [("tinylcm-data", "/data")],
                      "updater": [("/var/run/docker.sock", "/var/run/docker.sock"), ("tinylcm-data", "/data")]}
    assert services["updater"]["group_add"] == ["995"] and "group_add" not in services["inference"]
    assert services["updater"]["command"][0] == "updater"  # the watchdog finds the socket on its own


def test_without_the_docker_group_compose_says_what_to_set() -> None:
    done = config({})
    assert done.returncode != 0 and "DOCKER_GID" in done.stderr and "getent group docker" in done.stderr
