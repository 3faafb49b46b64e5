"""`bundle publish --from-mlflow`: a registered model version becomes a bundle, lineage kept both ways."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from mlflow.tracking import MlflowClient

from server.cli import main
from server.registry.lineage import TARGET_TAG
from tests.server.registry.fixtures import Repo, bundle_dir
from tests.server.utils import auth


@pytest.fixture
def mlflow_s3(test_env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("MLFLOW_S3_ENDPOINT_URL", test_env["TINYMLOPS_TEST_S3_ENDPOINT"])
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", test_env["TINYMLOPS_TEST_S3_ACCESS_KEY"])
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", test_env["TINYMLOPS_TEST_S3_SECRET_KEY"])
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    return test_env["TINYMLOPS_TEST_MLFLOW_URI"]


def test_publish_from_an_mlflow_alias(repo: Repo, mlflow_s3: str, client: TestClient, viewer_token: str,
                                      tmp_path: Path) -> None:
    import uuid

    mlflow = MlflowClient(mlflow_s3, registry_uri=mlflow_s3)
    name = f"digits-{uuid.uuid4().hex[:6]}"
    experiment = mlflow.create_experiment(name)
    run = mlflow.create_run(experiment)
    mlflow.log_artifacts(run.info.run_id, str(bundle_dir(tmp_path, "7.0.0")), "bundle")
    mlflow.set_terminated(run.info.run_id)
    mlflow.create_registered_model(name)
    version = mlflow.create_model_version(name, f"{run.info.artifact_uri}/bundle", run_id=run.info.run_id)
    mlflow.set_registered_model_alias(name, "champion", version.version)
    assert main(["bundle", "publish", "--from-mlflow", f"models:/{name}@champion", "--mlflow-uri", mlflow_s3,
                 "--key", str(repo.keys / "targets.key"), "--server", repo.url,
                 "--token", repo.operator_token]) == 0
    detail = client.get("/api/v1/registry/models/digits/versions/7.0.0", headers=auth(viewer_token)).json()
    assert detail["lineage"] == {"mlflow_model": name, "mlflow_version": str(version.version),
                                 "mlflow_run_id": run.info.run_id, "source": f"models:/{name}@champion"}
    tags = mlflow.get_model_version(name, version.version).tags
    assert tags[TARGET_TAG] == "digits/7.0.0/bundle.tar" and tags["tinysphere.sha256"] == detail["sha256"]


def test_publish_from_a_pyfunc_model_version(repo: Repo, mlflow_s3: str, client: TestClient, viewer_token: str,
                                             tmp_path: Path) -> None:
    import uuid

    from device.mlflow_model import register_bundle  # registration runs the device's code; the server does not

    name = f"digits-{uuid.uuid4().hex[:6]}"
    registered = register_bundle(bundle_dir(tmp_path, "7.5.0"), mlflow_s3, name, alias="champion")
    assert main(["bundle", "publish", "--from-mlflow", f"models:/{name}@champion", "--mlflow-uri", mlflow_s3,
                 "--key", str(repo.keys / "targets.key"), "--server", repo.url,
                 "--token", repo.operator_token]) == 0
    detail = client.get("/api/v1/registry/models/digits/versions/7.5.0", headers=auth(viewer_token)).json()
    assert detail["lineage"] == {"mlflow_model": name, "mlflow_version": registered.version,
                                 "mlflow_run_id": registered.run_id, "source": f"models:/{name}@champion"}
    tags = MlflowClient(mlflow_s3, registry_uri=mlflow_s3).get_model_version(name, registered.version).tags
    assert tags[TARGET_TAG] == "digits/7.5.0/bundle.tar" and tags["tinysphere.sha256"] == detail["sha256"]
