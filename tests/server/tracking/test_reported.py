"""A device's run is opened when a heartbeat first reports its model version, before any package names it."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient
from mlflow.tracking import MlflowClient
from sqlalchemy import select

from server.backends import Backends
from server.db.models import Bundle, MlflowRun
from server.tracking.bridge import MlflowBridge
from server.tracking.runs import TAG_DEVICE_ID, TAG_MODEL, TAG_MODEL_VERSION, experiment_name
from server.worker.runner import Worker
from tests.server.utils import EnrolledDevice, PackageSpec, build_package, enroll, upload


@pytest.fixture
def bridge(backends: Backends) -> Iterator[MlflowBridge]:
    """A bridge of the test's own that sends only when told (`flush`)."""
    opened = MlflowBridge(backends.settings.mlflow_tracking_uri or "", flush_interval_s=3600)
    yield opened
    opened.close()


@pytest.fixture
def worker(backends: Backends, bridge: MlflowBridge) -> Worker:
    return Worker(Backends(backends.settings, backends.engine, backends.sessions, backends.store, bridge))


@pytest.fixture
def model(backends: Backends) -> Iterator[str]:
    """A model of its own, so the test's runs are alone in its experiment."""
    name = f"reported-{uuid.uuid4().hex[:8]}"
    yield name
    with backends.sessions() as session:
        for bundle in session.scalars(select(Bundle).where(Bundle.model == name)):
            session.delete(bundle)
        session.commit()


def _publish(backends: Backends, model: str, version: str) -> None:
    with backends.sessions() as session:
        session.add(Bundle(model=model, version=version, target_path=f"{model}/{version}.tar.gz",
                           sha256=uuid.uuid4().hex * 2, length=1, object_key=f"{model}/{version}", custom={},
                           manifest={}, targets_version=1, published_by="test"))
        session.commit()


def _beat(client: TestClient, device: EnrolledDevice, version: str) -> None:
    response = client.post(f"/api/v1/devices/{device.device_id}/heartbeat", json={"model_version": version},
                           headers=device.headers)
    assert response.status_code == 200, response.text


def _runs(backends: Backends, model: str, device_id: str) -> list[Any]:
    mlflow = MlflowClient(backends.settings.mlflow_tracking_uri)
    experiment = mlflow.get_experiment_by_name(experiment_name(model))
    if experiment is None:
        return []
    return list(mlflow.search_runs([experiment.experiment_id], filter_string=f"tags.`{TAG_DEVICE_ID}` = '{device_id}'"))


def _open_the_others(worker: Worker, bridge: MlflowBridge) -> None:
    """Open the runs of what other tests' devices reported, so the counts below are this test's own."""
    for _ in range(20):
        asked = worker.open_reported_runs()
        assert bridge.flush()
        if not asked:
            return
    raise AssertionError("the scan kept finding versions without a run")


def _recorded(backends: Backends, device_id: str) -> dict[str, str]:
    with backends.sessions() as session:
        return {row.version: row.run_id for row in session.scalars(select(MlflowRun).where(
            MlflowRun.device_id == device_id))}


def test_a_reported_version_opens_its_run_once_and_imports_resume_it(
        client: TestClient, operator_token: str, backends: Backends, worker: Worker, bridge: MlflowBridge,
        model: str) -> None:
    version = f"3.{uuid.uuid4().hex[:6]}.0"
    _publish(backends, model, version)
    device = enroll(client, operator_token)
    _open_the_others(worker, bridge)
    assert _runs(backends, model, device.device_id) == []  # no version reported yet: no run

    _beat(client, device, version)
    assert worker.open_reported_runs() == 1
    assert (device.device_id, version) in bridge.waiting()
    assert worker.open_reported_runs() == 0  # waiting in the bridge (MLflow may be down): not asked again
    assert _runs(backends, model, device.device_id) == []  # nothing sent to MLflow from the scan itself
    assert bridge.flush()
    runs = _runs(backends, model, device.device_id)
    assert [(r.data.tags[TAG_MODEL_VERSION], r.data.tags[TAG_MODEL]) for r in runs] == [(version, model)]
    assert worker.open_reported_runs() == 0
    assert _recorded(backends, device.device_id) == {version: runs[0].info.run_id}

    # A package on that version lands in the run the heartbeat opened (resumed, not a second one).
    records = [{"seq": 1, "kind": "metric", "data": {"metrics": {"fps": 4.0}, "model_version": version}}]
    spec = PackageSpec(device.device_id, records)
    assert upload(client, device, spec.package_id, build_package(spec)).status_code == 201
    worker.drain()
    runs = _runs(backends, model, device.device_id)
    assert len(runs) == 1
    history = MlflowClient(backends.settings.mlflow_tracking_uri).get_metric_history(runs[0].info.run_id, "fps")
    assert [m.value for m in history] == [4.0]

    # The next version the device reports gets a run of its own.
    newer = f"4.{uuid.uuid4().hex[:6]}.0"
    _publish(backends, model, newer)
    _beat(client, device, newer)
    assert worker.open_reported_runs() == 1
    assert bridge.flush()
    assert sorted(r.data.tags[TAG_MODEL_VERSION] for r in _runs(backends, model, device.device_id)) == sorted(
        [version, newer])
    worker.open_reported_runs()
    assert set(_recorded(backends, device.device_id)) == {version, newer}


def test_a_version_with_characters_runs_are_not_keyed_by_is_matched_as_the_run_is_keyed(
        client: TestClient, operator_token: str, backends: Backends, worker: Worker, bridge: MlflowBridge,
        model: str) -> None:
    """The scan's SQL names the version as `safe_name` does, so a found run is never asked for again."""
    reported = f"5.0 rc/{uuid.uuid4().hex[:6]}"
    keyed = reported.replace(" ", "_").replace("/", "_")
    _publish(backends, model, keyed)
    device = enroll(client, operator_token)
    _open_the_others(worker, bridge)
    _beat(client, device, reported)
    assert worker.open_reported_runs() == 1
    assert bridge.flush()
    assert [r.data.tags[TAG_MODEL_VERSION] for r in _runs(backends, model, device.device_id)] == [keyed]
    assert worker.open_reported_runs() == 0
    assert set(_recorded(backends, device.device_id)) == {keyed}
    assert worker.open_reported_runs() == 0


def test_without_mlflow_the_scan_does_nothing(backends: Backends) -> None:
    plain = Worker(Backends(backends.settings, backends.engine, backends.sessions, backends.store, None))
    assert plain.open_reported_runs() == 0
