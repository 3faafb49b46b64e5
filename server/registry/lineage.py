"""Bundles from the MLflow model registry: a model version's artifacts hold the bundle directory.

Two layouts: a pyfunc model (`tinylcm bundle register`, device.mlflow_model) keeps the bundle as its `bundle`
artifact, `<model>/artifacts/bundle/`, beside the device code it carries; older versions registered the bundle
directory itself as plain run artifacts.

Lineage is kept both ways: the published bundle row names the MLflow model version and run, and
the model version gets tags naming the TUF target and its hash.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from server.errors import InputError, MlflowUnavailableError
from server.registry import bundle_archive

_URI = re.compile(r"^models:/(?P<name>[^/@]+)(?:@(?P<alias>[^/]+)|/(?P<version>\d+))$")
TARGET_TAG = "tinysphere.target"
SHA256_TAG = "tinysphere.sha256"
PYFUNC_BUNDLE = Path("artifacts", "bundle")  # where a pyfunc model keeps the bundle (device.mlflow_model.ARTIFACT)


def _client(tracking_uri: str | None) -> Any:
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)


def _version(client: Any, uri: str) -> Any:
    match = _URI.match(uri)
    if match is None:
        raise InputError(f"{uri!r} is not models:/NAME@ALIAS or models:/NAME/VERSION")
    if match["alias"]:
        return client.get_model_version_by_alias(match["name"], match["alias"])
    return client.get_model_version(match["name"], match["version"])


def _bundle_root(directory: Path) -> Path:
    """The bundle directory in a model version's artifacts: a pyfunc model's `bundle` artifact, else the
    shallowest directory holding a bundle.json."""
    if (directory / "MLmodel").is_file():  # a pyfunc model: only its bundle artifact, not the code it carries
        directory = directory / PYFUNC_BUNDLE
    found = sorted(directory.rglob("bundle.json"), key=lambda p: len(p.parts))
    if not found:
        raise InputError("the model version's artifacts hold no bundle.json")
    return found[0].parent


def bundle_from_mlflow(uri: str, tracking_uri: str | None, workdir: Path) -> tuple[Path, dict[str, str]]:
    """Download a registered model version, build its bundle tar; returns the tar and the lineage."""
    from mlflow.artifacts import download_artifacts
    from mlflow.exceptions import MlflowException

    client = _client(tracking_uri)
    try:
        version = _version(client, uri)
        location = client.get_model_version_download_uri(version.name, version.version)
        artifacts = download_artifacts(artifact_uri=location, dst_path=str(workdir / "artifacts"),
                                       tracking_uri=tracking_uri)
    except MlflowException as exc:
        raise MlflowUnavailableError(str(exc)) from exc
    tar = workdir / "bundle.tar"
    with tar.open("wb") as out:
        bundle_archive.build(_bundle_root(Path(artifacts)), out)
    lineage = {"mlflow_model": str(version.name), "mlflow_version": str(version.version),
               "mlflow_run_id": str(version.run_id or ""), "source": uri}
    return tar, lineage


def tag_model_version(tracking_uri: str | None, lineage: dict[str, str], target_path: str, sha256: str) -> None:
    """Record on the MLflow model version which TUF target it became."""
    client = _client(tracking_uri)
    name, version = lineage["mlflow_model"], lineage["mlflow_version"]
    client.set_model_version_tag(name, version, TARGET_TAG, target_path)
    client.set_model_version_tag(name, version, SHA256_TAG, sha256)
