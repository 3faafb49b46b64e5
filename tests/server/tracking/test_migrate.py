"""The one-shot MLflow migration: old per-package runs fold into per-(device, model version) runs."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from fastapi.testclient import TestClient
from mlflow.entities import Metric
from mlflow.tracking import MlflowClient

from server.backends import Backends
from server.tracking.bridge import MlflowBridge
from server.tracking.migrate import MIGRATED_TAG, PACKAGE_TAG, migrate
from server.tracking.runs import TAG_DEVICE_ID, experiment_name
from server.worker.runner import Worker
from tests.server.utils import PackageSpec, build_package, enroll, upload

START = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)


def _package(first: int, version: str) -> list[dict[str, Any]]:
    return [{"seq": seq, "kind": "metric", "ts": (START + timedelta(seconds=seq)).isoformat(),
             "data": {"name": "fps", "value": float(seq), "model_version": version}} for seq in range(first, first + 5)]


def _old_run(mlflow: MlflowClient, device_id: str, package_id: str, records: list[dict[str, Any]]) -> str:
    """A run as the server made them before: one per package, in the device's experiment."""
    name = f"device-{device_id}"
    experiment = mlflow.get_experiment_by_name(name)
    experiment_id = experiment.experiment_id if experiment else mlflow.create_experiment(name)
    run = mlflow.create_run(experiment_id, tags={PACKAGE_TAG: package_id, TAG_DEVICE_ID: device_id},
                            run_name=package_id)
    points = [Metric("fps", r["data"]["value"], int(datetime.fromisoformat(r["ts"]).timestamp() * 1000), r["seq"])
              for r in records]
    mlflow.log_batch(run.info.run_id, metrics=points)
    mlflow.set_terminated(run.info.run_id)
    return str(run.info.run_id)


def _without_mlflow(backends: Backends) -> Worker:
    """A worker that imports into the database only, as if MLflow had been left out."""
    return Worker(Backends(backends.settings, backends.engine, backends.sessions, backends.store, None))


def test_per_package_runs_fold_into_one_run_per_version(client: TestClient, operator_token: str,
                                                        backends: Backends) -> None:
    device = enroll(client, operator_token)
    mlflow = MlflowClient(backends.settings.mlflow_tracking_uri)
    old = []
    v1, v2 = f"1.0.0-{device.device_id[-8:]}", f"2.0.0-{device.device_id[-8:]}"  # no bundle names these versions
    for n, version in enumerate([v1, v1, v1, v2, v2]):
        records = _package(1 + 5 * n, version)
        spec = PackageSpec(device.device_id, records)
        assert upload(client, device, spec.package_id, build_package(spec)).status_code == 201
        old.append(_old_run(mlflow, device.device_id, spec.package_id, records))
    _without_mlflow(backends).drain()  # the records are in the database, MLflow has the old runs

    bridge = MlflowBridge(backends.settings.mlflow_tracking_uri or "")
    done = migrate(bridge, backends.sessions, [device.device_id])
    assert (done.runs, done.points, done.experiments) == (5, 25, 1)
    old_experiment = mlflow.get_experiment_by_name(f"device-{device.device_id}")
    assert old_experiment is not None and old_experiment.lifecycle_stage == "deleted"
    experiment = mlflow.get_experiment_by_name(experiment_name("unknown"))
    assert experiment is not None
    by_device = f"tags.`{TAG_DEVICE_ID}` = '{device.device_id}'"
    runs = mlflow.search_runs([experiment.experiment_id], filter_string=by_device)
    by_version = {r.data.tags["tinysphere.model_version"]: r.info.run_id for r in runs}
    assert sorted(by_version) == [v1, v2]
    assert sorted(m.step for m in mlflow.get_metric_history(by_version[v1], "fps")) == list(range(1, 16))
    assert sorted(m.step for m in mlflow.get_metric_history(by_version[v2], "fps")) == list(range(16, 26))
    first = mlflow.get_run(old[0])
    assert first.info.lifecycle_stage == "deleted" and first.data.tags[MIGRATED_TAG] == by_version[v1]

    again = migrate(bridge, backends.sessions, [device.device_id])  # nothing left to fold; the new runs are kept
    assert again.runs == 0 and len(mlflow.get_metric_history(by_version[v1], "fps")) == 15
    bridge.close()


def test_imports_after_the_migration_resume_the_folded_runs(client: TestClient, operator_token: str,
                                                            backends: Backends, worker: Worker) -> None:
    device = enroll(client, operator_token)
    mlflow = MlflowClient(backends.settings.mlflow_tracking_uri)
    version = f"3.0.0-{device.device_id[-8:]}"
    records = _package(1, version)
    spec = PackageSpec(device.device_id, records)
    assert upload(client, device, spec.package_id, build_package(spec)).status_code == 201
    _old_run(mlflow, device.device_id, spec.package_id, records)
    _without_mlflow(backends).drain()
    migrate(MlflowBridge(backends.settings.mlflow_tracking_uri or ""), backends.sessions, [device.device_id])
    later = PackageSpec(device.device_id, _package(6, version))
    assert upload(client, device, later.package_id, build_package(later)).status_code == 201
    worker.drain()
    experiment = mlflow.get_experiment_by_name(experiment_name("unknown"))
    assert experiment is not None
    by_device = f"tags.`{TAG_DEVICE_ID}` = '{device.device_id}'"
    runs = mlflow.search_runs([experiment.experiment_id], filter_string=by_device)
    assert len(runs) == 1 and len(mlflow.get_metric_history(runs[0].info.run_id, "fps")) == 10
