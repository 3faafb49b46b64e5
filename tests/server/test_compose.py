"""The production compose stack, read as Docker would read it (there is no Docker engine here).

`docker-compose config` resolves the file; the build contexts are checked against the ignore file
BuildKit would use (docker-py's matcher); hadolint lints every Dockerfile, inline ones included; the
MinIO init script runs under /bin/sh with a stand-in `mc` that records what it is asked to do.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
from pathlib import Path
from typing import Any

import pytest
from docker.utils.build import exclude_paths

from server.config import Settings
from server.registry import offline, repository
from tests.utils.tools import tool

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILES = (ROOT / "compose.server.yml", ROOT / "docker-compose.yml")
SECRETS = {
    "POSTGRES_PASSWORD": "4f1c9e0b7a33",
    "MINIO_ROOT_USER": "root5e21",
    "MINIO_ROOT_PASSWORD": "8d2e5a7c1b9f",
    "MINIO_TINYSPHERE_PASSWORD": "6b0d7e3f2a91",
    "MINIO_MLFLOW_PASSWORD": "0c9a4e8b7d15",
    "MLFLOW_BASIC_AUTH_HASH": "$2a$14$Zkq1ZW5lLWhhc2gtZm9yLXRlc3RzLW9ubHk.abcdefghijklmno",
}
PROJECT_BUCKETS = {"packages", "drift-samples", "prediction-images", "data-logs", "bundles", "mlflow"}


def _compose(tmp_path: Path, env: dict[str, str], path: Path = COMPOSE_FILES[0]) -> subprocess.CompletedProcess[str]:
    empty = tmp_path / "empty.env"
    empty.write_text("")
    argv = [tool("docker-compose"), "--env-file", str(empty), "-f", str(path), "config", "--format", "json"]
    base = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}
    return subprocess.run(argv, env={**base, **env}, capture_output=True, text=True, timeout=60, check=False,
                          cwd=ROOT)


@pytest.fixture(scope="module")
def config(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    result = _compose(tmp_path_factory.mktemp("compose"), SECRETS)
    assert result.returncode == 0, result.stderr
    return dict(json.loads(result.stdout))


def test_compose_config_is_valid(config: dict[str, Any]) -> None:
    services = config["services"]
    assert set(services) == {"db", "minio", "minio-init", "mlflow", "api", "worker", "proxy"}
    long_running = {name for name, service in services.items() if service.get("restart") != "no"}
    assert long_running == set(services) - {"minio-init"}
    assert all("healthcheck" in services[name] for name in long_running)
    assert services["mlflow"]["environment"]["MLFLOW_SERVER_ENABLE_JOB_EXECUTION"] == "false"
    assert services["api"]["deploy"]["replicas"] == services["worker"]["deploy"]["replicas"] == 2


@pytest.mark.parametrize("missing", sorted(SECRETS))
def test_compose_refuses_missing_secrets(tmp_path: Path, missing: str) -> None:
    result = _compose(tmp_path, {k: v for k, v in SECRETS.items() if k != missing})
    assert result.returncode != 0 and missing in result.stderr


def test_env_example_names_every_required_variable() -> None:
    example = (ROOT / ".env.example").read_text()
    required = set(re.findall(r"\$\{(\w+):\?", (ROOT / "compose.server.yml").read_text()))
    assert required == set(SECRETS)
    assert all(re.search(rf"^{name}=", example, flags=re.MULTILINE) for name in required)
    optional = set(re.findall(r"\$\{(\w+):-", (ROOT / "compose.server.yml").read_text()))
    assert all(re.search(rf"^{name}=", example, flags=re.MULTILINE) for name in optional), optional


# ---- secrets: from files or the environment, never on a command line ----

def _argv_of(service: dict[str, Any]) -> str:
    parts = [service.get("command") or [], service.get("entrypoint") or [], service.get("healthcheck", {}).get("test")
             or []]
    return json.dumps(parts)


def test_no_secret_is_on_a_command_line(config: dict[str, Any]) -> None:
    for name, service in config["services"].items():
        argv = _argv_of(service)
        for secret in SECRETS.values():
            assert secret.replace("$", "$$") not in argv and secret not in argv, (name, secret)


def _holders(config: dict[str, Any], value: str) -> set[str]:
    return {name for name, service in config["services"].items()
            if any(value in str(v).replace("$$", "$") for v in (service.get("environment") or {}).values())}


def test_only_minio_and_its_init_job_hold_the_root_credentials(config: dict[str, Any]) -> None:
    assert _holders(config, SECRETS["MINIO_ROOT_PASSWORD"]) == {"minio", "minio-init"}
    assert _holders(config, SECRETS["MINIO_TINYSPHERE_PASSWORD"]) == {"api", "worker", "minio-init"}
    assert _holders(config, SECRETS["MINIO_MLFLOW_PASSWORD"]) == {"mlflow", "minio-init"}
    for name in ("api", "worker"):
        env = config["services"][name]["environment"]
        assert env["TINYSPHERE_S3_ACCESS_KEY"] == "tinysphere" != SECRETS["MINIO_ROOT_USER"]
        assert env["PGPASSWORD"] == SECRETS["POSTGRES_PASSWORD"]
        assert SECRETS["POSTGRES_PASSWORD"] not in env["TINYSPHERE_DATABASE_URL"]
    assert config["services"]["mlflow"]["environment"]["AWS_ACCESS_KEY_ID"] == "mlflow"


def test_services_read_their_compose_environment_as_settings(config: dict[str, Any]) -> None:
    """Every TINYSPHERE_* variable compose gives the API is a Settings field, and production rules accept them."""
    env = config["services"]["api"]["environment"]
    fields = {f"TINYSPHERE_{name.upper()}" for name in Settings.model_fields}
    assert {key for key in env if key.startswith("TINYSPHERE_")} <= fields
    settings = Settings(**{key.removeprefix("TINYSPHERE_").lower(): value for key, value in env.items()
                           if key.startswith("TINYSPHERE_")})
    assert settings.environment == "production" and settings.mlflow_tracking_uri == "http://mlflow:5000"


def test_online_keys_arrive_as_secret_files_the_server_signs_with(config: dict[str, Any], tmp_path: Path) -> None:
    """The key ceremony's files, mounted where compose mounts them, are the keys the server signs with."""
    keys = tmp_path / "keys"
    offline.init(keys)
    declared = config["secrets"]
    assert {Path(declared[name]["file"]).name for name in ("tuf_snapshot_key", "tuf_timestamp_key")} == {
        "tuf-snapshot.key", "tuf-timestamp.key"}
    for name in ("api", "worker"):
        service = config["services"][name]
        mounts = {secret["target"]: secret["source"] for secret in service["secrets"]}
        env = {key.removeprefix("TINYSPHERE_").lower(): value for key, value in service["environment"].items()
               if key.startswith("TINYSPHERE_")}
        for role in ("snapshot", "timestamp"):
            target = env[f"tuf_{role}_key_file"]
            source = Path(declared[mounts[target]]["file"])  # what the operator put there: the ceremony's key
            assert source.name == f"tuf-{role}.key"
            env[f"tuf_{role}_key_file"] = str(keys / f"{role}.key")
        settings = Settings(data_dir=tmp_path / "nowhere", **env)
        root = offline.current_root(keys).signed
        for role in ("snapshot", "timestamp"):
            assert repository.online_signer(settings, role).public_key.keyid in root.roles[role].keyids


# ---- MLflow: behind the proxy, with basic auth; no password in its arguments ----

def test_mlflow_is_reached_through_the_proxy_with_basic_auth(config: dict[str, Any]) -> None:
    caddyfile = (ROOT / "deploy" / "compose" / "Caddyfile").read_text()
    site = caddyfile[caddyfile.index("{$MLFLOW_SITE_ADDRESS} {"):]
    site = site[:site.index("\n}\n")]
    assert "basic_auth {\n\t\t{$MLFLOW_BASIC_AUTH_USER} {$MLFLOW_BASIC_AUTH_HASH}\n\t}" in site
    assert "reverse_proxy mlflow:5000" in site and "header_up Host mlflow:5000" in site
    proxy = config["services"]["proxy"]
    assert "5000" in {str(port["published"]) for port in proxy["ports"]}
    assert proxy["environment"]["MLFLOW_BASIC_AUTH_HASH"].replace("$$", "$") == SECRETS["MLFLOW_BASIC_AUTH_HASH"]
    command = config["services"]["mlflow"]["command"]
    hosts = command[command.index("--allowed-hosts") + 1].split(",")
    assert "mlflow:5000" in hosts  # the Host the proxy sends


def test_mlflow_reads_its_backend_store_from_the_environment(config: dict[str, Any]) -> None:
    from mlflow.cli import server

    envvars = {param.name: param.envvar for param in server.params}
    env = config["services"]["mlflow"]["environment"]
    assert envvars["backend_store_uri"] == "MLFLOW_BACKEND_STORE_URI"
    assert env["MLFLOW_BACKEND_STORE_URI"] == "postgresql+psycopg2://tinysphere@db:5432/mlflow"
    assert "--backend-store-uri" not in config["services"]["mlflow"]["command"]


def test_mlflow_image_matches_the_pinned_client() -> None:
    from importlib.metadata import version

    dockerfile = (ROOT / "deploy" / "mlflow" / "Dockerfile").read_text()
    assert f"FROM ghcr.io/mlflow/mlflow:v{version('mlflow')}\n" in dockerfile


# ---- images and Dockerfiles ----

def test_every_image_of_the_stack_is_pinned(config: dict[str, Any]) -> None:
    images = [service["image"] for service in config["services"].values() if "image" in service]
    images += [line.split()[1] for name, build in _builds().items() if name.startswith("compose.server.yml:")
               for line in build["text"].splitlines() if line.startswith("FROM ")]
    assert len(images) >= 8
    for image in images:
        name, _, tag = image.rpartition(":")
        assert name and "/" not in tag and tag != "latest" and re.search(r"\d", tag), image


def _builds() -> dict[str, dict[str, Any]]:
    """Each compose build: context, Dockerfile text and the ignore patterns BuildKit applies to its context."""
    builds: dict[str, dict[str, Any]] = {}
    for path in COMPOSE_FILES:
        env = {**os.environ, **SECRETS, "HOME": "/tmp"}
        out = subprocess.run([tool("docker-compose"), "-f", str(path), "config", "--format", "json"], env=env,
                             capture_output=True, text=True, timeout=60, cwd=ROOT)
        assert out.returncode == 0, out.stderr
        for name, service in json.loads(out.stdout)["services"].items():
            if "build" not in service:
                continue
            context = Path(service["build"]["context"])
            if "dockerfile_inline" in service["build"]:
                dockerfile, text = None, service["build"]["dockerfile_inline"]
            else:
                dockerfile = context / service["build"].get("dockerfile", "Dockerfile")
                text = dockerfile.read_text()
            own = Path(f"{dockerfile}.dockerignore") if dockerfile else None
            ignore = own if own and own.exists() else context / ".dockerignore"
            patterns = [line.strip() for line in ignore.read_text().splitlines()
                        if line.strip() and not line.lstrip().startswith("#")] if ignore.exists() else []
            builds[f"{path.name}:{name}"] = {"context": context, "dockerfile": dockerfile, "text": text,
                                            "patterns": patterns}
    return builds


def _copy_sources(text: str) -> list[str]:
    """The sources of every COPY/ADD that reads the build context (not another stage)."""
    joined = re.sub(r"\\\n", " ", text)
    sources = []
    for line in joined.splitlines():
        words = line.strip().split(None, 1)
        if len(words) < 2 or words[0].upper() not in ("COPY", "ADD"):
            continue
        rest = words[1].strip()
        args = json.loads(rest) if rest.startswith("[") else shlex.split(rest)
        flags = [a for a in args if a.startswith("--")]
        if any(flag.startswith("--from=") for flag in flags):
            continue
        sources += [a for a in args if not a.startswith("--")][:-1]
    return sources


def test_copy_sources_are_inside_their_context_and_not_ignored() -> None:
    """The regression: the root .dockerignore left server/ out while the server image copied it."""
    builds = _builds()
    assert {"compose.server.yml:api", "compose.server.yml:worker", "compose.server.yml:mlflow",
            "docker-compose.yml:inference"} <= set(builds)
    checked = 0
    for name, build in builds.items():
        context = build["context"].resolve()
        included = exclude_paths(str(context), build["patterns"])
        for source in _copy_sources(build["text"]):
            assert not source.startswith(("http://", "https://")), f"{name}: ADD of a URL ({source})"
            path = (context / source).resolve()
            assert path.is_relative_to(context), f"{name}: {source} is outside the context {context}"
            assert path.exists(), f"{name}: {source} does not exist in {context}"
            relative = path.relative_to(context).as_posix()
            files = [p for p in included if p == relative or p.startswith(relative + "/")]
            assert files, f"{name}: {source} is excluded by the context's ignore rules"
            if path.is_dir():
                wanted = {p.relative_to(context).as_posix() for p in path.rglob("*.py")
                          if "__pycache__" not in p.parts}
                assert wanted <= set(included), f"{name}: {sorted(wanted - set(included))[:5]} ignored"
            checked += 1
    assert checked >= 6


def test_every_dockerfile_in_the_tree_is_built_by_a_compose_file() -> None:
    listed = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard", "*Dockerfile*"],
                            capture_output=True, text=True, timeout=60, cwd=ROOT, check=True).stdout.split()
    on_disk = {(ROOT / p).resolve() for p in listed if not p.endswith(".dockerignore") and (ROOT / p).exists()}
    assert on_disk
    built = {build["dockerfile"].resolve() for build in _builds().values() if build["dockerfile"]}
    assert on_disk == built


def test_hadolint_passes_on_every_dockerfile(tmp_path: Path) -> None:
    for name, build in _builds().items():
        path = build["dockerfile"] or tmp_path / f"{name.replace(':', '-')}.Dockerfile"
        if build["dockerfile"] is None:
            path.write_text(build["text"])
        out = subprocess.run([tool("hadolint"), "--failure-threshold", "style", "--format", "json", str(path)],
                             capture_output=True, text=True, timeout=60, cwd=ROOT)
        assert out.returncode == 0 and json.loads(out.stdout or "[]") == [], (name, out.stdout + out.stderr)


def test_server_image_runs_as_non_root() -> None:
    text = (ROOT / "server" / "Dockerfile").read_text()
    runtime = text[text.rindex("\nFROM "):]
    assert re.findall(r"^USER (\S+)", runtime, flags=re.MULTILINE)[-1] == "10001"
    assert "COPY --from=build /opt/tinysphere /opt/tinysphere" in runtime


# ---- minio-init: scoped users, policies on the project's buckets, the package lifecycle ----

MC_STAND_IN = """#!/bin/sh
# Records each call (argv, then stdin when it reads a password or a document) and answers like mc.
printf '%s\\n' "$*" >> "$MC_LOG/argv"
case "$*" in
  "admin user add "*|"ilm rule import "*) cat >> "$MC_LOG/stdin.$(echo "$*" | tr ' /' '__')" ;;
  "admin policy create "*) cp "$6" "$MC_LOG/policy.$5.json" ;;
  "admin user info "*) echo '{"status":"success","accessKey":"x","policyName":""}' ;;
esac
"""


def _minio_init(tmp_path: Path, config: dict[str, Any], **env: str) -> subprocess.CompletedProcess[str]:
    bin_dir, log = tmp_path / "bin", tmp_path / "log"
    bin_dir.mkdir()
    log.mkdir()
    (bin_dir / "mc").write_text(MC_STAND_IN)
    (bin_dir / "mc").chmod(0o755)
    service_env = {k: str(v).replace("$$", "$") for k, v in config["services"]["minio-init"]["environment"].items()}
    script = Path(config["configs"]["minio-init"]["file"])
    assert config["services"]["minio-init"]["entrypoint"] == ["/bin/sh", "/usr/local/bin/minio-init.sh"]
    return subprocess.run(["/bin/sh", str(script)], capture_output=True, text=True, timeout=30, check=False,
                          env={"PATH": f"{bin_dir}:/usr/bin:/bin", "MC_LOG": str(log), **service_env, **env})


def test_minio_init_scopes_users_to_the_project_buckets(config: dict[str, Any], tmp_path: Path) -> None:
    result = _minio_init(tmp_path, config)
    assert result.returncode == 0, result.stderr
    log = tmp_path / "log"
    argv = (log / "argv").read_text()
    for secret in SECRETS.values():
        assert secret not in argv
    assert "admin user add local tinysphere\n" in argv and "admin user add local mlflow\n" in argv
    assert (log / "stdin.admin_user_add_local_tinysphere").read_text() == SECRETS["MINIO_TINYSPHERE_PASSWORD"] + "\n"
    assert (log / "stdin.admin_user_add_local_mlflow").read_text() == SECRETS["MINIO_MLFLOW_PASSWORD"] + "\n"
    assert "admin policy attach local tinysphere-buckets --user tinysphere" in argv
    assert "admin policy attach local mlflow-bucket --user mlflow" in argv
    for bucket in PROJECT_BUCKETS:
        assert f"mb --ignore-existing local/{bucket}\nanonymous set none local/{bucket}\n" in argv

    def resources(policy: str, actions_with: str = "s3:GetObject") -> set[str]:
        document = json.loads((log / f"policy.{policy}.json").read_text())
        return {r for s in document["Statement"] if actions_with in s["Action"] for r in s["Resource"]}

    server = resources("tinysphere-buckets")
    assert server == {f"arn:aws:s3:::{b}{s}" for b in PROJECT_BUCKETS - {"mlflow"} for s in ("", "/*")}
    assert resources("tinysphere-buckets", "s3:ListBucket") - server == {"arn:aws:s3:::mlflow"}
    assert resources("mlflow-bucket") == {"arn:aws:s3:::mlflow", "arn:aws:s3:::mlflow/*"}
    rule = json.loads((log / "stdin.ilm_rule_import_local_packages").read_text())["Rules"]
    assert rule == [{"ID": "expire-imported-packages", "Status": "Enabled",
                     "Filter": {"Tag": {"Key": "tinysphere-imported", "Value": "true"}}, "Expiration": {"Days": 30}}]


def test_minio_init_takes_the_retention_from_the_environment(config: dict[str, Any], tmp_path: Path) -> None:
    result = _minio_init(tmp_path, config, TINYSPHERE_PACKAGE_RETENTION_DAYS="7")
    assert result.returncode == 0, result.stderr
    rule = json.loads((tmp_path / "log" / "stdin.ilm_rule_import_local_packages").read_text())["Rules"][0]
    assert rule["Expiration"] == {"Days": 7}


@pytest.mark.parametrize("days", ["0", "-3", "ten", "1.5"])
def test_minio_init_refuses_a_bad_retention(config: dict[str, Any], tmp_path: Path, days: str) -> None:
    result = _minio_init(tmp_path, config, TINYSPHERE_PACKAGE_RETENTION_DAYS=days)
    assert result.returncode == 1 and "TINYSPHERE_PACKAGE_RETENTION_DAYS" in result.stderr
    assert not (tmp_path / "log" / "argv").exists()  # nothing was changed


def test_minio_init_passes_shellcheck() -> None:
    out = subprocess.run([tool("shellcheck"), "-s", "sh", str(ROOT / "deploy" / "compose" / "minio-init.sh")],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stdout


def test_api_believes_client_addresses_from_the_proxy_only_inside_the_stack(config: dict[str, Any]) -> None:
    """The credential limits count failures per client address: behind the proxy that is X-Forwarded-For.

    Without FORWARDED_ALLOW_IPS uvicorn trusts only 127.0.0.1, every request would come from the proxy's
    address, and one client's bad tokens would lock the whole fleet out."""
    api = config["services"]["api"]
    assert api["environment"]["FORWARDED_ALLOW_IPS"] == "*"
    assert not api.get("ports")  # trusting any sender is safe only while nothing but the proxy can reach it


def test_presigned_objects_are_served_as_sandboxed_data() -> None:
    """MinIO answers presigned sample links itself; the proxy adds what the dashboard's own route sends."""
    caddyfile = (ROOT / "deploy" / "compose" / "Caddyfile").read_text()
    site = caddyfile[caddyfile.index(":9000 {"):]
    site = site[:site.index("\n}\n")]
    assert "X-Content-Type-Options nosniff" in site
    assert "Content-Security-Policy \"default-src 'none'; img-src 'self'; sandbox\"" in site


def test_the_device_image_ships_neither_the_simulator_nor_the_server() -> None:
    """The device image copies contract/ and device/; fault-injection tooling and the server stay out of it."""
    build = _builds()["docker-compose.yml:inference"]
    assert {"contract", "device"} <= {s.split("/")[0] for s in _copy_sources(build["text"])}
    included = exclude_paths(str(build["context"].resolve()), build["patterns"])
    assert not [p for p in included if p.startswith(("simulator/", "server/"))]
    assert [p for p in included if p.startswith("contract/")]
