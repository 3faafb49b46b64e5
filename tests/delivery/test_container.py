"""The device image and the compose files, checked statically (no Docker engine here), and the image's
entrypoint and HEALTHCHECK run as plain processes."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import tomllib
from pathlib import Path

import yaml

from device.config import parse_config
from tests.utils.tools import tool
from tests.utils.wait import wait_until

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "device" / "Dockerfile.armv7"
COMPOSE = ROOT / "docker-compose.yml"
SERVER_COMPOSE = ROOT / "compose.server.yml"
CONSTRAINTS = ROOT / "device" / "constraints-armv7.txt"
DEVICE_EXTRA = ["numpy", "pillow", "dacite", "aiohttp", "tenacity", "urllib3", "tuf", "cryptography"]


def stages(text: str) -> list[str]:
    """The Dockerfile split at each FROM (comment lines dropped)."""
    lines = [line for line in text.splitlines() if not line.lstrip().startswith("#")]
    return re.split(r"^FROM ", "\n".join(lines), flags=re.MULTILINE)[1:]


def example_env() -> dict[str, str]:
    """The variables .env.example declares, the empty ones filled in (compose refuses to interpolate them)."""
    example = ROOT / ".env.example"
    pairs = [line.split("=", 1) for line in example.read_text().splitlines()
             if "=" in line and not line.lstrip().startswith("#")] if example.exists() else []
    return {key.strip(): value.strip() or f"config-check-{key.strip().lower()}" for key, value in pairs}


def compose_config(path: Path) -> dict:
    env = {**os.environ, **example_env()}
    out = subprocess.run([tool("docker-compose"), "-f", str(path), "-p", "tinymlops", "config", "--format", "json"],
                         capture_output=True, text=True, timeout=60, cwd=ROOT, env=env)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


# ---- Dockerfile ----

def test_hadolint_passes_at_the_strictest_threshold() -> None:
    out = subprocess.run([tool("hadolint"), "--failure-threshold", "style", "--format", "json", str(DOCKERFILE)],
                         capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert out.returncode == 0, out.stdout + out.stderr
    assert json.loads(out.stdout or "[]") == []


def test_every_ignored_rule_is_explained() -> None:
    lines = DOCKERFILE.read_text().splitlines()
    ignores = [i for i, line in enumerate(lines) if "hadolint ignore=" in line]
    assert ignores, "no ignored rule: drop this test's premise or keep it honest"
    for i in ignores:
        above = lines[i - 1].strip()
        assert above.startswith("#") and "hadolint" not in above and len(above) > 20, (
            f"line {i + 1}: the ignored rule needs a comment saying why, right above it"
        )


def test_image_is_multi_stage_without_compilers_in_the_runtime() -> None:
    build, runtime = stages(DOCKERFILE.read_text())
    assert "piwheels.org/simple" in build and "constraints-armv7.txt" in build
    for compiler in ("build-essential", "gcc", "python3-dev", "libffi-dev", "curl"):
        assert compiler not in runtime, compiler
    assert "COPY --from=build /opt/tinylcm /opt/tinylcm" in runtime


def test_runtime_is_non_root_with_data_volume_healthcheck_and_two_entrypoints() -> None:
    runtime = stages(DOCKERFILE.read_text())[-1]
    user = re.findall(r"^USER (\S+)", runtime, flags=re.MULTILINE)
    assert user and user[-1].split(":")[0] not in ("0", "root")
    assert 'VOLUME ["/data"]' in runtime
    assert "HEALTHCHECK" in runtime and "/healthz" in runtime
    assert 'ENTRYPOINT ["tinylcm"]' in runtime
    assert 'CMD ["run", "--config", "/etc/tinylcm/device.json"]' in runtime


def baked_config() -> dict:
    """The JSON the Dockerfile writes to /etc/tinylcm/device.json."""
    text = DOCKERFILE.read_text()
    block = text[text.index("RUN mkdir -p /etc/tinylcm"):text.index("> /etc/tinylcm/device.json")]
    return json.loads("".join(re.findall(r"'([^']*)'", block)[1:]))


def test_baked_config_is_valid_and_uses_the_volume() -> None:
    config = parse_config(baked_config(), "Dockerfile")
    assert config.device.data_dir == "/data"
    assert config.camera.source == "camera"


# ---- the constraints file ----

def pins() -> dict[str, str]:
    result = {}
    for line in CONSTRAINTS.read_text().splitlines():
        line = line.split("#")[0].strip()
        if line:
            name, _, version = line.partition("==")
            assert version, f"not an exact pin: {line}"
            result[name.lower()] = version
    return result


def test_constraints_pin_the_device_dependencies_exactly() -> None:
    pinned = pins()
    assert pinned["tflite-runtime"] == "2.14.0"
    assert pinned["numpy"].split(".")[0] == "1"
    for name in DEVICE_EXTRA:
        assert name in pinned, name


def test_constraints_satisfy_the_device_extra() -> None:
    from packaging.requirements import Requirement

    extra = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]["device"]
    pinned = pins()
    for spec in map(Requirement, extra):
        if spec.marker and not spec.marker.evaluate({"platform_machine": "armv7l"}):
            continue
        assert spec.specifier.contains(pinned[spec.name.lower()]), (spec, pinned[spec.name.lower()])


def test_constraints_are_a_closed_consistent_set(tmp_path: Path) -> None:
    """pip resolves the pinned set as requirements and adds nothing else (pip itself comes with the venv)."""
    report = tmp_path / "report.json"
    out = subprocess.run([sys.executable, "-m", "pip", "install", "--dry-run", "--ignore-installed", "--quiet",
                          "--report", str(report), "--requirement", str(CONSTRAINTS), "--constraint", str(CONSTRAINTS)],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    resolved = {i["metadata"]["name"].lower().replace("_", "-"): i["metadata"]["version"]
                for i in json.loads(report.read_text())["install"]}
    resolved.pop("pip", None)
    assert resolved == {name.replace("_", "-"): version for name, version in pins().items()}


# ---- compose files and balena ----

def test_device_compose_config_passes() -> None:
    services = compose_config(COMPOSE)["services"]
    assert set(services) == {"inference", "updater"}
    for service in services.values():
        assert service["build"]["dockerfile"] == "device/Dockerfile.armv7"
        assert service["restart"] == "always"
        assert [(v["source"], v["target"]) for v in service["volumes"]] == [("tinylcm-data", "/data")]
    assert services["inference"]["command"][0] == "run"
    assert services["updater"]["command"][0] == "updater"
    assert services["updater"]["network_mode"] == services["inference"]["network_mode"] == "host"
    assert services["inference"]["labels"]["io.balena.features.sysfs"] == "1"
    assert services["updater"]["labels"]["io.balena.features.supervisor-api"] == "1"


def test_device_compose_stays_within_what_balena_reads() -> None:
    data = yaml.safe_load(COMPOSE.read_text())
    assert str(data["version"]).startswith("2")
    assert "${" not in COMPOSE.read_text()  # balena does no variable substitution
    for service in data["services"].values():
        assert "container_name" not in service and "logging" not in service
        assert all(not str(v).startswith(("/", ".")) for v in service["volumes"])  # named volumes only


def test_server_compose_config_passes() -> None:
    assert compose_config(SERVER_COMPOSE)["services"]


def test_balena_release_metadata() -> None:
    meta = yaml.safe_load((ROOT / "balena.yml").read_text())
    version = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    assert meta["name"] and meta["type"] == "sw.application" and meta["version"] == version
    types = meta["data"]["supportedDeviceTypes"]
    assert meta["data"]["defaultDeviceType"] == "raspberrypi3" and "raspberrypi3" in types
    assert "raspberrypi0-2w-64" in types  # the 64-bit variant of the board


# ---- the entrypoint and the HEALTHCHECK, as processes ----

def healthcheck_command(port: int) -> list[str]:
    runtime = stages(DOCKERFILE.read_text())[-1]
    exec_form = re.search(r"HEALTHCHECK .*?CMD (\[.*?\])\n", runtime, flags=re.DOTALL)
    assert exec_form is not None
    argv = json.loads(exec_form.group(1))
    assert argv[0] == "python"
    return [sys.executable, *[a.replace(":8321/", f":{port}/") for a in argv[1:]]]


def wait_for_port(proc: subprocess.Popen[str], log: Path) -> int:
    """The health port the service announces in its log."""

    def announced() -> re.Match[str] | None:
        found = re.search(r"health on 127\.0\.0\.1:(\d+)", log.read_text())
        assert found or proc.poll() is None, log.read_text()
        return found

    return int(wait_until(announced, 30, "the service to announce its health port", interval=0.05).group(1))


def test_entrypoint_runs_and_passes_the_image_healthcheck(tmp_path: Path) -> None:
    config = baked_config()
    config["device"].update(data_dir=str(tmp_path), health_port=0)
    config["camera"].update(source="digits", fps=50.0)  # picamera2 cannot import off a Pi
    path = tmp_path / "device.json"
    path.write_text(json.dumps(config))
    log = tmp_path / "stderr.log"
    with log.open("w") as stderr:
        proc = subprocess.Popen([sys.executable, "-m", "device.cli", "run", "--config", str(path)], cwd=ROOT,
                                stderr=stderr, text=True)
    try:
        port = wait_for_port(proc, log)
        check = subprocess.run(healthcheck_command(port), capture_output=True, text=True, timeout=10)
        assert check.returncode == 0, check.stderr
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)
    assert proc.returncode == 0
    assert (tmp_path / "outbox.db").exists()


def test_updater_entrypoint_is_declared() -> None:
    from device.cli import build_parser

    commands = next(a for a in build_parser()._actions if a.dest == "command").choices
    assert commands is not None and {"run", "updater"} <= set(commands)
