"""MLflow shaped for a fleet: one run per (device, model version), metrics as series, found by version tag."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from mlflow.entities import Metric
from mlflow.tracking import MlflowClient

from server.backends import Backends
from server.db.models import Bundle, Rollout, RolloutDevice
from server.tracking.bridge import MlflowBridge, RunBatch
from server.tracking.runs import (
    TAG_BUNDLE_SHA256,
    TAG_DEVICE_ID,
    TAG_DEVICE_NAME,
    TAG_DEVICE_TAGS,
    TAG_MODEL,
    TAG_ROLLOUT_ID,
    RunKey,
    experiment_name,
)
from server.worker.runner import Worker
from tests.server.utils import EnrolledDevice, PackageSpec, build_package, enroll, upload

START = datetime(2026, 12, 6, 8, 0, tzinfo=UTC)
PER_PACKAGE = 25


@pytest.fixture
def publish(backends: Backends) -> Iterator[Callable[[str, str, str | None], tuple[str, int | None]]]:
    """Adds bundle rows (and a finished rollout of one to a device), removed again after the test."""
    added: list[Any] = []

    def add(model: str, version: str, device_id: str | None = None) -> tuple[str, int | None]:
        sha = uuid.uuid4().hex * 2
        with backends.sessions() as session:
            bundle = Bundle(model=model, version=version, target_path=f"{model}/{version}.tar.gz", sha256=sha,
                            length=1, object_key=f"{model}/{version}", custom={}, manifest={}, targets_version=1,
                            published_by="test")
            session.add(bundle)
            session.flush()
            added.append(bundle)
            if device_id is None:
                session.commit()
                return sha, None
            rollout = Rollout(bundle_id=bundle.id, state="completed", selector={}, waves=[], gates={},
                              wave_timeout_s=60, created_by="test")
            session.add(rollout)
            session.flush()
            link = RolloutDevice(rollout_id=rollout.id, device_id=device_id, wave=0, state="updated", active=False)
            session.add(link)
            added.extend([rollout, link])
            session.commit()
            return sha, rollout.id

    yield add
    with backends.sessions() as session:
        for row in reversed(added):
            session.delete(session.merge(row))
            session.flush()
        session.commit()


def _send_metrics(client: TestClient, device: EnrolledDevice, first_seq: int, version: str) -> None:
    """One package of `PER_PACKAGE` metric records as a device sends them, with its frame counter."""
    records = [{"seq": seq, "kind": "metric", "ts": (START + timedelta(seconds=seq)).isoformat(),
                "data": {"metrics": {"fps": seq / 10, "latency_ms": 100.0 + seq}, "model_version": version,
                         "frame_seq": 1000 + seq}}
               for seq in range(first_seq, first_seq + PER_PACKAGE)]
    spec = PackageSpec(device.device_id, records)
    assert upload(client, device, spec.package_id, build_package(spec)).status_code == 201


def test_a_long_run_keeps_one_run_per_device_and_model_version(
        client: TestClient, operator_token: str, backends: Backends, worker: Worker,
        publish: Callable[[str, str, str | None], tuple[str, int | None]]) -> None:
    model = f"digits-{uuid.uuid4().hex[:8]}"
    device = enroll(client, operator_token, name="pi-kitchen", tags=["kitchen", "beta"])
    other = enroll(client, operator_token)
    publish(model, "1.0.0", None)
    sha2, rollout_id = publish(model, "2.0.0", device.device_id)
    packages = 24
    for n in range(packages):  # the first half on 1.0.0, then the rollout brings 2.0.0
        _send_metrics(client, device, 1 + n * PER_PACKAGE, "1.0.0" if n < packages // 2 else "2.0.0")
        if n % 5 == 4:
            worker.drain()
    _send_metrics(client, other, 1, "2.0.0")
    worker.drain()

    mlflow = MlflowClient(backends.settings.mlflow_tracking_uri)
    experiment = mlflow.get_experiment_by_name(experiment_name(model))
    assert experiment is not None
    by_device = f"tags.`{TAG_DEVICE_ID}` = '{device.device_id}'"
    runs = mlflow.search_runs([experiment.experiment_id], filter_string=by_device)
    assert sorted(r.data.tags["tinysphere.model_version"] for r in runs) == ["1.0.0", "2.0.0"]
    for run in runs:
        for name in ("fps", "latency_ms"):
            history = mlflow.get_metric_history(run.info.run_id, name)
            assert len(history) == PER_PACKAGE * packages // 2
        first = min(history, key=lambda m: m.step)
        seq = first.step - 1000  # step is the frame counter, timestamp the device's record time
        assert first.timestamp == int((START + timedelta(seconds=seq)).timestamp() * 1000)

    on_2 = backends.mlflow.runs_of_version(model, "2.0.0") if backends.mlflow else []
    assert {r.data.tags[TAG_DEVICE_ID] for r in on_2} == {device.device_id, other.device_id}
    tags = next(r for r in on_2 if r.data.tags[TAG_DEVICE_ID] == device.device_id).data.tags
    assert tags[TAG_DEVICE_NAME] == "pi-kitchen" and tags[TAG_DEVICE_TAGS] == "kitchen,beta"
    assert (tags[TAG_MODEL], tags[TAG_BUNDLE_SHA256], tags[TAG_ROLLOUT_ID]) == (model, sha2, str(rollout_id))


def _batch(key: RunKey, points: list[Metric]) -> RunBatch:
    return RunBatch(key, {TAG_DEVICE_ID: key.device_id, "tinysphere.model_version": key.version}, list(points))


def test_a_batch_sent_twice_is_not_duplicated(backends: Backends) -> None:
    """A flush whose answer was lost is sent again; MLflow's SQL store keeps each identical point once."""
    bridge = MlflowBridge(backends.settings.mlflow_tracking_uri or "", flush_interval_s=3600)
    key = RunKey(f"dev-{uuid.uuid4().hex[:8]}", f"m-{uuid.uuid4().hex[:6]}", "1.0.0")
    points = [Metric("fps", float(i), 1_000 * i, i) for i in range(1, 1501)]  # two log_batch calls
    bridge.add([_batch(key, points)])
    assert bridge.flush()
    bridge.add([_batch(key, points[-10:])])
    assert bridge.flush()
    runs = bridge.runs_of_version(key.model, "1.0.0")
    assert len(runs) == 1
    history = MlflowClient(bridge.tracking_uri).get_metric_history(runs[0].info.run_id, "fps")
    assert sorted(m.step for m in history) == list(range(1, 1501))
    bridge.close()


def test_a_backlog_is_bounded_per_run(backends: Backends) -> None:
    """While MLflow is away the points wait, the oldest dropped beyond `max_pending`."""
    bridge = MlflowBridge("http://127.0.0.1:9", flush_interval_s=3600, max_pending=3)
    key = RunKey("dev-x", "m", "1.0.0")
    bridge.add([_batch(key, [Metric("fps", float(i), i, i) for i in range(5)])])
    bridge.add([_batch(key, [Metric("fps", 9.0, 9, 9)])])
    assert bridge.pending() == 3
    assert not bridge.flush() and bridge.pending() == 3


def test_predictions_open_the_run_of_each_version_they_name(client: TestClient, operator_token: str,
                                                            backends: Backends, worker: Worker) -> None:
    """Records without metrics only open runs: each version a package's predictions name gets its run (one
    record per version is fed to MLflow), and a prediction naming none goes to the device's reported version."""
    device = enroll(client, operator_token)
    versions = ["1.0.0", "2.0.0", None, "1.0.0", "2.0.0", None, ""]
    records = [{"seq": seq, "kind": "prediction", "ts": (START + timedelta(seconds=seq)).isoformat(),
                "data": {"label": "cat", "confidence": 0.9, **({"model_version": v} if v is not None else {})}}
               for seq, v in enumerate(versions, start=1)]
    spec = PackageSpec(device.device_id, records)
    assert upload(client, device, spec.package_id, build_package(spec)).status_code == 201
    worker.drain()
    assert backends.mlflow is not None
    runs = backends.mlflow.runs_of_device(device.device_id)
    assert sorted(r.data.tags["tinysphere.model_version"] for r in runs) == ["1.0.0", "2.0.0", "unknown"]
