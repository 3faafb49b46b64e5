"""The watchdog on a plain Docker host: the real Docker SDK against the Engine API stand-in on a unix socket."""

from __future__ import annotations

import json
import logging
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from device.errors import ServerRefusedError, ServerUnavailableError
from device.updater import DockerRestarter, ProcessRestarter, Watchdog, select_restarter, update_report
from device.updater.container import PROJECT_LABEL, SERVICE_LABEL
from device.updater.health import read_health
from tests.device.updater.docker_api import Container, DockerEngineStandIn, container_id
from tests.device.updater.fakes import make_updater
from tests.utils.net import free_port
from tests.utils.wait import wait_until

STANDIN = Path(__file__).with_name("inference_standin.py")
BALENA = {"BALENA_SUPERVISOR_ADDRESS": "http://127.0.0.1:48484", "BALENA_SUPERVISOR_API_KEY": "KEY",
          "BALENA_APP_ID": "1"}


def compose(project: str, service: str, argv: list[str] | None = None) -> Container:
    name = f"{project}-{service}-1"
    return Container(container_id(name), name, {SERVICE_LABEL: service, PROJECT_LABEL: project,
                                                "com.docker.compose.oneoff": "False"}, argv=argv)


@pytest.fixture
def sock(tmp_path: Path) -> Iterator[Path]:
    # unix socket paths are limited to ~107 bytes: pytest's tmp_path can be longer
    path = Path(f"/tmp/tinymlops-docker-{os.getpid()}-{tmp_path.name[-20:]}.sock")
    path.unlink(missing_ok=True)
    yield path
    path.unlink(missing_ok=True)


@pytest.fixture
def engine(sock: Path) -> Iterator[DockerEngineStandIn]:
    containers = [compose("tinymlops", "inference"), compose("tinymlops", "updater"),
                  compose("other", "inference"), Container(container_id("db"), "db", {})]
    with DockerEngineStandIn(sock, containers) as standin:
        yield standin


def test_restarts_the_container_of_the_service_and_project(engine: DockerEngineStandIn, sock: Path) -> None:
    DockerRestarter(sock, "inference", "tinymlops", stop_timeout_s=1).restart()
    assert engine.restarted() == ["tinymlops-inference-1"]
    listed = [path for method, path in engine.requests if "/containers/json" in path]
    assert len(listed) == 1 and "all=1" in listed[0] and "com.docker.compose.service%3Dinference" in listed[0]
    assert any(path.endswith("/restart?t=1") for method, path in engine.requests if method == "POST")
    assert engine.requests[0] == ("GET", "/version")  # the SDK negotiates the API version first


def test_an_ambiguous_service_is_refused_and_restarts_nothing(engine: DockerEngineStandIn, sock: Path) -> None:
    with pytest.raises(ServerRefusedError, match=r"2 compose projects \(other, tinymlops\).*--compose-project"):
        DockerRestarter(sock, "inference").restart()
    assert engine.restarted() == []
    del engine.containers[container_id("other-inference-1")]
    DockerRestarter(sock, "inference").restart()  # one project has the service: no name needed
    assert engine.restarted() == ["tinymlops-inference-1"]


def test_socket_and_engine_errors_are_clear(engine: DockerEngineStandIn, sock: Path, tmp_path: Path) -> None:
    missing = tmp_path / "absent.sock"
    with pytest.raises(ServerUnavailableError, match=f"Docker engine unreachable at unix://{missing}"):
        DockerRestarter(missing).restart()
    dead = Path(f"{sock}.dead")
    listener = socket.socket(socket.AF_UNIX)
    listener.bind(str(dead))
    listener.close()  # a socket file nobody listens on: the engine stopped
    try:
        with pytest.raises(ServerUnavailableError, match="Docker engine unreachable at unix://.*refused"):
            DockerRestarter(dead).restart()
    finally:
        dead.unlink()
    with pytest.raises(ServerRefusedError, match="no container on .* carries the label "
                                                 "com.docker.compose.service=camera"):
        DockerRestarter(sock, "camera").restart()
    engine.restart_status = [500, 403]
    with pytest.raises(ServerUnavailableError, match="HTTP 500"):
        DockerRestarter(sock, "inference", "tinymlops").restart()
    with pytest.raises(ServerRefusedError, match="HTTP 403") as refused:
        DockerRestarter(sock, "inference", "tinymlops").restart()
    assert refused.value.status == 403 and engine.restarted() == []


def test_the_watchdog_logs_a_failed_restart_and_carries_on(sock: Path, caplog: pytest.LogCaptureFixture) -> None:
    from device.updater.health import HealthSample

    now = [0.0]
    dog = Watchdog(DockerRestarter(sock), stale_after_s=1, clock=lambda: now[0])  # no engine behind the path
    now[0] = 5.0
    with caplog.at_level(logging.ERROR):
        assert dog.observe(HealthSample(reachable=False))
    assert "restart failed: Docker engine unreachable" in caplog.text


def test_a_hung_inference_container_is_restarted(sock: Path, data_dir: Path) -> None:
    port = free_port()
    inference = compose("tinymlops", "inference", [sys.executable, str(STANDIN), str(port)])
    url = f"http://127.0.0.1:{port}/healthz"
    with DockerEngineStandIn(sock, [inference, compose("tinymlops", "updater"), compose("other", "inference")]) as eng:
        first = wait_healthy(url)
        assert inference.process is not None
        dog = Watchdog(DockerRestarter(sock, "inference", "tinymlops", stop_timeout_s=1), stale_after_s=1.0)
        updater = make_updater(data_dir, "http://127.0.0.1:9", health=lambda: read_health(url, 0.3), watchdog=dog)
        os.kill(inference.process.pid, signal.SIGSTOP)  # wedged: the port accepts, nothing answers
        deadline = time.monotonic() + 30
        while dog.restarts == 0 and time.monotonic() < deadline:
            updater.step()
            time.sleep(0.2)
        assert dog.restarts == 1 and eng.restarted() == ["tinymlops-inference-1"]
        second = wait_healthy(url)
        assert second["pid"] != first["pid"] and inference.restarts == 1
        for _ in range(5):
            updater.step()
        assert dog.restarts == 1  # healthy again: left alone


def wait_healthy(url: str, timeout_s: float = 20) -> dict:
    wait_until(lambda: read_health(url, 0.5).healthy, timeout_s, f"{url} to become healthy")
    with urllib.request.urlopen(url, timeout=2) as response:
        return dict(json.loads(response.read()))


def test_selection_order(engine: DockerEngineStandIn, sock: Path, tmp_path: Path) -> None:
    cmd = f"{sys.executable} -c 'import time; time.sleep(60)'"
    assert select_restarter(BALENA, docker_socket=sock, inference_cmd=cmd).kind == "balena"
    docker = select_restarter({}, docker_socket=sock, compose_project="tinymlops", inference_cmd=cmd)
    assert docker.kind == "docker" and isinstance(docker.restarter, DockerRestarter)
    assert docker.restarter.socket_path == sock and docker.restarter.project == "tinymlops"
    plain_file = tmp_path / "docker.sock"
    plain_file.write_text("")  # not a socket: no engine behind it
    child = select_restarter({}, docker_socket=plain_file, inference_cmd=cmd)
    assert child.kind == "process" and isinstance(child.restarter, ProcessRestarter)
    assert child.restarter.process is None  # chosen, not started
    none = select_restarter({}, docker_socket=tmp_path / "absent.sock")
    assert none.kind == "none" and none.restarter is None and "will NOT be restarted" in none.detail
    assert engine.requests == []  # choosing never talks to the engine


def test_no_watchdog_is_said_once_at_start_and_reported(tmp_path: Path) -> None:
    """`tinylcm updater` on a host with none of the three: one warning, and `watchdog: none` in the report."""
    data = tmp_path / "data"
    env = {k: v for k, v in os.environ.items() if not k.startswith("BALENA_")}
    done = subprocess.run([sys.executable, "-m", "device.updater", "--data-dir", str(data), "--once",
                           "--docker-socket", str(tmp_path / "absent.sock"),
                           "--health-url", "http://127.0.0.1:9/healthz"],
                          capture_output=True, text=True, timeout=120, env=env)
    assert done.returncode == 0, done.stderr
    warnings = [line for line in done.stderr.splitlines() if "WARNING" in line and "watchdog" in line.lower()]
    assert len(warnings) == 1 and "NO WATCHDOG" in warnings[0] and "will NOT be restarted" in warnings[0]
    assert json.loads(done.stdout)["watchdog"] == "none"
    assert update_report(data)["watchdog"] == "none"


def test_the_heartbeat_carries_the_watchdog(tmp_path: Path) -> None:
    from tests.device.test_appliance import _appliance

    appliance = _appliance(tmp_path)
    try:
        (tmp_path / "state").mkdir(exist_ok=True)
        (tmp_path / "state" / "updater.json").write_text(json.dumps({"state": "IDLE", "watchdog": "none"}))
        assert appliance._sync_status()["health"]["watchdog"] == "none"
    finally:
        appliance.outbox.close()


def test_choosing_docker_does_not_load_the_sdk(engine: DockerEngineStandIn, sock: Path) -> None:
    code = ("import sys\nfrom pathlib import Path\nfrom device.updater.watchdog import select_restarter\n"
            f"choice = select_restarter({{}}, docker_socket=Path({str(sock)!r}))\n"
            "assert choice.kind == 'docker', choice\n"
            "print(sorted(m for m in ('docker', 'requests') if m in sys.modules))\n"
            "choice.restarter.restart()\n"
            "print(sorted(m for m in ('docker', 'requests') if m in sys.modules))\n")
    del engine.containers[container_id("other-inference-1")]
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ["[]", "['docker', 'requests']"]
