"""The Kubernetes manifests under deploy/kubernetes, validated offline against the API schemas
(kubernetes-validate, strict: unknown fields are errors) and checked for the references between them.

The kustomization's Secrets are built here the way kustomize's secretGenerator builds them (names as
written: `disableNameSuffixHash`), from the example credentials file and the key file names.
"""

from __future__ import annotations

import base64
import json
import subprocess
import sys
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from server.config import Settings

ROOT = Path(__file__).resolve().parents[2]
BASE = ROOT / "deploy" / "kubernetes"
# The oldest Kubernetes still supported upstream when these were written, and the newest schemas shipped.
VERSIONS = ("1.31.0", kubernetes_validate.latest_version())


def kustomization() -> dict[str, Any]:
    return dict(yaml.safe_load((BASE / "kustomization.yaml").read_text()))


def _env_keys(path: Path) -> list[str]:
    return [line.split("=", 1)[0] for line in path.read_text().splitlines() if line and not line.startswith("#")]


def generated_secrets() -> list[dict[str, Any]]:
    """The Secrets the secretGenerator makes, with placeholder values."""
    found = []
    for generator in kustomization()["secretGenerator"]:
        data: dict[str, str] = {}
        for env_file in generator.get("envs", []):
            example = BASE / f"{env_file}.example"
            data |= {key: base64.b64encode(b"placeholder").decode() for key in _env_keys(example)}
        for entry in generator.get("files", []):
            key, _, path = entry.partition("=")
            assert path.startswith("secrets/"), entry
            data[key] = base64.b64encode(b"-----BEGIN PRIVATE KEY-----").decode()
        found.append({"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
                      "metadata": {"name": generator["name"], "namespace": kustomization()["namespace"]},
                      "data": data})
    return found


def resources() -> list[dict[str, Any]]:
    docs = []
    for name in kustomization()["resources"]:
        docs += [doc for doc in yaml.safe_load_all((BASE / name).read_text()) if doc]
    return docs + generated_secrets()


def by_kind(kind: str) -> dict[str, dict[str, Any]]:
    return {doc["metadata"]["name"]: doc for doc in resources() if doc["kind"] == kind}


def pod_specs() -> Iterator[tuple[str, dict[str, Any]]]:
    for kind in ("Deployment", "Job"):
        for name, doc in by_kind(kind).items():
            yield name, doc["spec"]["template"]["spec"]


@pytest.mark.parametrize("version", VERSIONS)
def test_every_manifest_validates_strictly(version: str) -> None:
    docs = resources()
    assert {doc["kind"] for doc in docs} == {"Namespace", "ConfigMap", "Job", "Deployment", "Service",
                                             "HorizontalPodAutoscaler", "PodDisruptionBudget", "Ingress", "Secret"}
    for doc in docs:
        try:
            kubernetes_validate.validate(doc, version, strict=True)
        except kubernetes_validate.ValidationError as exc:
            pytest.fail(f"{doc['kind']}/{doc['metadata']['name']} on {version}: {exc.message} at {list(exc.path)}")


def test_the_validator_rejects_what_the_cluster_would() -> None:
    """The check has teeth: a misspelt field and a wrong type are both refused."""
    deployment = by_kind("Deployment")["tinysphere-api"]
    misspelt = json.loads(json.dumps(deployment))
    misspelt["spec"]["replica"] = misspelt["spec"].pop("replicas")
    wrong_type = json.loads(json.dumps(deployment))
    wrong_type["spec"]["replicas"] = "two"
    for doc in (misspelt, wrong_type):
        with pytest.raises(kubernetes_validate.ValidationError):
            kubernetes_validate.validate(doc, VERSIONS[-1], strict=True)


def test_kubectl_kustomize_would_find_every_file() -> None:
    spec = kustomization()
    for name in spec["resources"]:
        assert (BASE / name).is_file(), name
    ignored = (BASE / "secrets" / ".gitignore").read_text().splitlines()
    assert "*" in ignored and "!credentials.env.example" in ignored  # credentials and keys stay out of git
    assert spec["generatorOptions"]["disableNameSuffixHash"] is True


def test_references_between_objects_resolve() -> None:
    config_maps, secrets = by_kind("ConfigMap"), by_kind("Secret")
    for name, spec in pod_specs():
        volumes = {v["name"]: v for v in spec.get("volumes", [])}
        for container in spec["containers"]:
            for source in container.get("envFrom", []):
                if "configMapRef" in source:
                    assert source["configMapRef"]["name"] in config_maps, name
                else:
                    assert source["secretRef"]["name"] in secrets, name
            for mount in container.get("volumeMounts", []):
                volume = volumes[mount["name"]]
                if "secret" in volume:
                    assert volume["secret"]["secretName"] in secrets, name
    for name, deployment in by_kind("Deployment").items():
        labels = deployment["spec"]["template"]["metadata"]["labels"]
        assert deployment["spec"]["selector"]["matchLabels"].items() <= labels.items(), name
    api_pod = by_kind("Deployment")["tinysphere-api"]["spec"]["template"]
    service = by_kind("Service")["tinysphere-api"]
    assert service["spec"]["selector"].items() <= api_pod["metadata"]["labels"].items()
    ports = {p["name"] for c in api_pod["spec"]["containers"] for p in c.get("ports", [])}
    assert {p["targetPort"] for p in service["spec"]["ports"]} <= ports
    backend = by_kind("Ingress")["tinysphere"]["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"]
    assert backend["name"] == "tinysphere-api"
    assert backend["port"]["name"] in {p["name"] for p in service["spec"]["ports"]}


def test_the_api_scales_on_cpu_and_the_workers_are_replicas() -> None:
    hpa = by_kind("HorizontalPodAutoscaler")["tinysphere-api"]
    assert hpa["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": "tinysphere-api"}
    assert hpa["spec"]["metrics"][0]["resource"]["name"] == "cpu"
    assert hpa["spec"]["minReplicas"] >= 2
    api = by_kind("Deployment")["tinysphere-api"]["spec"]["template"]["spec"]["containers"][0]
    assert api["resources"]["requests"]["cpu"]  # utilisation is measured against it
    assert by_kind("Deployment")["tinysphere-worker"]["spec"]["replicas"] >= 2


def test_online_keys_are_mounted_where_the_settings_look() -> None:
    data = by_kind("ConfigMap")["tinysphere-config"]["data"]
    keys = by_kind("Secret")["tinysphere-tuf-keys"]["data"]
    for name, spec in pod_specs():
        if name.startswith("tinysphere-migrate"):
            continue
        volume = next(v for v in spec["volumes"] if v.get("secret", {}).get("secretName") == "tinysphere-tuf-keys")
        mount = next(m for m in spec["containers"][0]["volumeMounts"] if m["name"] == volume["name"])
        for role in ("snapshot", "timestamp"):
            assert data[f"TINYSPHERE_TUF_{role.upper()}_KEY_FILE"] == f"{mount['mountPath']}/tuf-{role}.key", name
            assert f"tuf-{role}.key" in keys
        assert volume["secret"]["defaultMode"] == 0o440 and spec["securityContext"]["fsGroup"] == 10001


def test_config_and_credentials_are_settings_the_server_accepts() -> None:
    """Every TINYSPHERE_* name is a Settings field, and production rules accept the values (secrets filled)."""
    data = by_kind("ConfigMap")["tinysphere-config"]["data"]
    credentials = _env_keys(BASE / "secrets" / "credentials.env.example")
    fields = {f"TINYSPHERE_{name.upper()}" for name in Settings.model_fields}
    named = [key for key in [*data, *credentials] if key.startswith("TINYSPHERE_")]
    assert set(named) <= fields, set(named) - fields
    values = {key.removeprefix("TINYSPHERE_").lower(): value for key, value in data.items()}
    values |= {"s3_access_key": "tinysphere", "s3_secret_key": "6b0d7e3f2a91"}
    settings = Settings(**values)
    assert settings.environment == "production" and settings.database_url and settings.mlflow_tracking_uri
    assert "PGPASSWORD" in credentials and "@" in settings.database_url and ":" not in \
        settings.database_url.split("//", 1)[1].split("@", 1)[0]  # no password in the URL


def test_pods_run_as_the_image_user_without_privileges() -> None:
    for name, spec in pod_specs():
        assert spec["securityContext"]["runAsNonRoot"] is True and spec["securityContext"]["runAsUser"] == 10001
        assert spec["automountServiceAccountToken"] is False
        for container in spec["containers"]:
            context = container["securityContext"]
            assert context["allowPrivilegeEscalation"] is False and context["readOnlyRootFilesystem"] is True, name
            assert context["capabilities"]["drop"] == ["ALL"]
            assert any(m["mountPath"] == "/tmp" for m in container["volumeMounts"]), name


def _compose_services() -> dict[str, Any]:
    env = {"PATH": "/usr/bin:/bin", "HOME": "/tmp", "POSTGRES_PASSWORD": "x1", "MINIO_ROOT_USER": "x2",
           "MINIO_ROOT_PASSWORD": "x3", "MINIO_TINYSPHERE_PASSWORD": "x4", "MINIO_MLFLOW_PASSWORD": "x5",
           "MLFLOW_BASIC_AUTH_HASH": "x6"}
    binary = Path(sys.executable).parent / "docker-compose"
    out = subprocess.run([str(binary), "-f", str(ROOT / "compose.server.yml"), "config", "--format", "json"],
                         env=env, capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert out.returncode == 0, out.stderr
    return dict(json.loads(out.stdout)["services"])


def test_containers_run_what_compose_runs_from_the_same_image() -> None:
    services = _compose_services()
    version = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    deployments = by_kind("Deployment")
    for component in ("api", "worker"):
        container = deployments[f"tinysphere-{component}"]["spec"]["template"]["spec"]["containers"][0]
        assert container["command"] == services[component]["command"]
        assert container["image"] == services[component]["image"] == f"tinysphere:{version}"
    assert kustomization()["images"][0]["newTag"] == version
    job = next(iter(by_kind("Job").values()))
    assert job["metadata"]["name"] == f"tinysphere-migrate-{version.replace('.', '-')}"
    assert job["spec"]["template"]["spec"]["containers"][0]["command"] == ["tinysphere", "migrate"]
