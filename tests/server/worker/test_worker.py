"""The import worker against PostgreSQL, the S3 server and the MLflow server."""

from __future__ import annotations

import io
import threading
from typing import Any

import pytest
from fastapi.testclient import TestClient
from mlflow.tracking import MlflowClient
from sqlalchemy import func, select

from server.backends import Backends
from server.db.models import DriftEvent, Job, Metric, Package, Record
from server.errors import StorageUnavailableError
from server.tracking.bridge import MlflowBridge
from server.tracking.runs import TAG_MODEL_VERSION
from server.worker import queue
from server.worker.runner import Worker
from tests.server.utils import (
    JPEG,
    EnrolledDevice,
    PackageSpec,
    build_package,
    drift_record,
    enroll,
    record,
    upload,
)


def _send(client: TestClient, device: EnrolledDevice, records: list[dict[str, Any]],
          blobs: dict[str, bytes] | None = None) -> str:
    spec = PackageSpec(device.device_id, records, blobs or {})
    assert upload(client, device, spec.package_id, build_package(spec)).status_code == 201
    return spec.package_id


def _package(backends: Backends, package_id: str) -> Package:
    with backends.sessions() as session:
        return session.scalars(select(Package).where(Package.id == package_id)).one()  # ids are unique here


def _count(backends: Backends, model: Any, device_id: str) -> int:
    with backends.sessions() as session:
        query = select(func.count()).select_from(model).where(model.device_id == device_id)
        return int(session.scalar(query) or 0)


def test_import_fans_records_out(client: TestClient, operator_token: str, backends: Backends,
                                 worker: Worker) -> None:
    device = enroll(client, operator_token)
    records = [drift_record(1, "blobs/f1.jpg"), record(2, "metric", {"name": "fps", "value": 4.5}),
               record(3, "metric", {"metrics": {"latency_ms": 120.0, "fps": 4.0}}),
               record(4, "log", {"level": "WARNING", "logger": "outbox", "message": "disk 90%"}),
               record(5, "image", {"label": "cat"}, "blobs/f5.jpg"), record(6, "prediction", {"label": "cat"}),
               record(7, "adaptation", {"action": "snapshot"})]
    package_id = _send(client, device, records, {"f1.jpg": JPEG, "f5.jpg": JPEG})
    worker.drain()
    package = _package(backends, package_id)
    assert package.status == "imported" and (package.seq_first, package.seq_last) == (1, 7)
    assert _count(backends, Record, device.device_id) == 7
    assert _count(backends, DriftEvent, device.device_id) == 1
    assert _count(backends, Metric, device.device_id) == 3
    sample = io.BytesIO()
    backends.store.download("drift-samples", f"{device.device_id}/1.jpg", sample)
    assert sample.getvalue() == JPEG
    assert backends.store.exists("prediction-images", f"{device.device_id}/5.jpg")
    log = io.BytesIO()
    backends.store.download("data-logs", f"{device.device_id}/{package_id}.jsonl", log)
    assert b"disk 90%" in log.getvalue()
    day = records[0]["ts"][:10]
    unknown = _mlflow_run(backends, device.device_id, "unknown")  # the device never said its version
    mlflow = MlflowClient(backends.settings.mlflow_tracking_uri)
    history = mlflow.get_metric_history(unknown.info.run_id, "fps")
    assert sorted((m.step, m.value) for m in history) == [(2, 4.5), (3, 4.0)]
    assert [a.path for a in mlflow.list_artifacts(unknown.info.run_id, f"logs/{day}")] == [f"logs/{day}/4-4.jsonl"]
    drift = _mlflow_run(backends, device.device_id, "1.0.0")  # the drift event named its model version
    assert [a.path for a in mlflow.list_artifacts(drift.info.run_id, f"drift/{day}")] == [f"drift/{day}/1.jpg"]


def _mlflow_runs(backends: Backends, device_id: str, version: str | None = None) -> list[Any]:
    """The device's runs (on `version`, if given)."""
    assert backends.mlflow is not None
    runs = backends.mlflow.runs_of_device(device_id)
    return [r for r in runs if version is None or r.data.tags[TAG_MODEL_VERSION] == version]


def _mlflow_run(backends: Backends, device_id: str, version: str) -> Any:
    runs = _mlflow_runs(backends, device_id, version)
    assert len(runs) == 1
    return runs[0]


def test_reimport_is_idempotent(client: TestClient, operator_token: str, backends: Backends,
                                worker: Worker) -> None:
    device = enroll(client, operator_token)
    package_id = _send(client, device, [drift_record(1, "blobs/a.jpg"), record(2, "metric", {"name": "x", "value": 1})],
                       {"a.jpg": JPEG})
    worker.drain()
    with backends.sessions() as session:  # as if a crashed worker's job came back
        session.add(Job(kind="import_package", device_id=device.device_id, package_id=package_id))
        session.commit()
    worker.drain()
    assert _package(backends, package_id).status == "imported"
    assert _count(backends, Record, device.device_id) == 2
    assert _count(backends, DriftEvent, device.device_id) == 1
    assert _count(backends, Metric, device.device_id) == 1
    run = _mlflow_run(backends, device.device_id, "unknown")
    history = MlflowClient(backends.settings.mlflow_tracking_uri).get_metric_history(run.info.run_id, "x")
    assert [(m.step, m.value) for m in history] == [(2, 1.0)]
    assert len(_mlflow_runs(backends, device.device_id)) == 2  # 1.0.0 of the drift event, unknown of the metric


def test_overlapping_sequence_range_is_rejected(client: TestClient, operator_token: str, backends: Backends,
                                                worker: Worker) -> None:
    device = enroll(client, operator_token)
    first = _send(client, device, [record(10, "log", {"message": "a"}), record(12, "log", {"message": "b"})])
    worker.drain()
    second = _send(client, device, [record(11, "log", {"message": "c"}), record(20, "log", {"message": "d"})])
    worker.drain()
    rejected = _package(backends, second)
    assert rejected.status == "rejected" and rejected.error and first in rejected.error
    assert _count(backends, Record, device.device_id) == 2


@pytest.mark.parametrize("records", [[record(1, "telepathy", {})], [record(1, "metric", {"name": "x"})],
                                     [record(1, "drift_event", {"statistic": 1.0})]],
                         ids=["unknown-kind", "metric-without-value", "drift-without-detector"])
def test_bad_records_reject_the_package_without_retrying(client: TestClient, operator_token: str,
                                                         backends: Backends, worker: Worker,
                                                         records: list[dict[str, Any]]) -> None:
    device = enroll(client, operator_token)
    package_id = _send(client, device, records)
    assert worker.drain() == 1
    package = _package(backends, package_id)
    assert package.status == "rejected" and package.error
    assert _count(backends, Record, device.device_id) == 0


class _FlakyStore:
    """The real store, except that `failures` uploads fail as if S3 were down."""

    def __init__(self, real: Any, failures: int) -> None:
        self.real, self.failures = real, failures

    def __getattr__(self, name: str) -> Any:
        return getattr(self.real, name)

    def put_file(self, *args: Any, **kwargs: Any) -> None:
        if self.failures > 0:
            self.failures -= 1
            raise StorageUnavailableError("connection refused")
        self.real.put_file(*args, **kwargs)


def _worker_with(backends: Backends, **changes: Any) -> Worker:
    values = {"settings": backends.settings, "engine": backends.engine, "sessions": backends.sessions,
              "store": backends.store, "mlflow": backends.mlflow, **changes}
    return Worker(Backends(**values))


def test_storage_outage_is_retried_then_succeeds(client: TestClient, operator_token: str,
                                                 backends: Backends) -> None:
    device = enroll(client, operator_token)
    package_id = _send(client, device, [drift_record(1, "blobs/a.jpg")], {"a.jpg": JPEG})
    flaky = _worker_with(backends, store=_FlakyStore(backends.store, failures=1))
    flaky.drain()
    assert _package(backends, package_id).status == "imported"
    with backends.sessions() as session:
        job = session.scalars(select(Job).where(Job.package_id == package_id)).one()
    assert job.state == "done" and job.attempts == 2 and "connection refused" in (job.last_error or "")


def test_a_storage_outage_parks_after_max_attempts_then_requeue_recovers(
    client: TestClient, operator_token: str, backends: Backends, admin_token: str
) -> None:
    device = enroll(client, operator_token)
    package_id = _send(client, device, [drift_record(1, "blobs/a.jpg")], {"a.jpg": JPEG})
    down = _worker_with(backends, store=_FlakyStore(backends.store, failures=backends.settings.job_max_attempts))
    down.drain()
    package = _package(backends, package_id)
    assert package.status == "parked" and "connection refused" in (package.error or "")
    assert _count(backends, Record, device.device_id) == 0  # rolled back, nothing half-imported
    jobs = client.get("/api/v1/jobs", params={"state": "parked"}, headers={"Authorization": f"Bearer {admin_token}"})
    assert package_id in [j["package_id"] for j in jobs.json()["items"]]
    response = client.post("/api/v1/jobs/requeue", params={"package_id": package_id},
                           headers={"Authorization": f"Bearer {admin_token}"})
    assert response.json() == {"requeued": 1}
    Worker(backends).drain()
    assert _package(backends, package_id).status == "imported"


def test_an_mlflow_outage_delays_the_mlflow_record_not_the_import(
    client: TestClient, operator_token: str, backends: Backends, monkeypatch: pytest.MonkeyPatch
) -> None:
    """MLflow is off the import path: the package is imported at once, its points wait and arrive when it is back."""
    device = enroll(client, operator_token)
    package_id = _send(client, device, [record(1, "metric", {"name": "fps", "value": 3.0})])
    bridge = MlflowBridge(backends.settings.mlflow_tracking_uri or "")
    with monkeypatch.context() as down:
        down.setattr(bridge._client, "log_batch", _refused)
        _worker_with(backends, mlflow=bridge).drain()
        assert _package(backends, package_id).status == "imported"
        assert _count(backends, Record, device.device_id) == 1
        assert bridge.pending() == 1
    assert bridge.flush() and bridge.pending() == 0
    run = _mlflow_run(backends, device.device_id, "unknown")
    history = MlflowClient(backends.settings.mlflow_tracking_uri).get_metric_history(run.info.run_id, "fps")
    assert [(m.step, m.value) for m in history] == [(1, 3.0)]
    bridge.close()


def _refused(*args: Any, **kwargs: Any) -> None:
    raise ConnectionError("connection refused")


def test_concurrent_workers_take_each_job_once(client: TestClient, operator_token: str,
                                               backends: Backends) -> None:
    device = enroll(client, operator_token)
    ids = [_send(client, device, [record(seq, "log", {"message": str(seq)})]) for seq in range(1, 9)]
    counts: list[int] = []
    threads = [threading.Thread(target=lambda: counts.append(Worker(backends).drain())) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sum(counts) >= len(ids)
    assert all(_package(backends, package_id).status == "imported" for package_id in ids)
    with backends.sessions() as session:
        attempts = session.scalars(select(Job.attempts).where(Job.package_id.in_(ids))).all()
    assert attempts == [1] * len(ids)


def test_cli_worker_once(client: TestClient, operator_token: str, backends: Backends,
                         monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    from server.cli import main

    settings = backends.settings
    for name, value in {"DATABASE_URL": settings.database_url, "S3_ENDPOINT": settings.s3_endpoint,
                        "S3_ACCESS_KEY": settings.s3_access_key,
                        "S3_SECRET_KEY": settings.s3_secret_key.get_secret_value(),
                        "BUCKET_PREFIX": settings.bucket_prefix,
                        "MLFLOW_TRACKING_URI": settings.mlflow_tracking_uri}.items():
        monkeypatch.setenv(f"TINYSPHERE_{name}", str(value))
    device = enroll(client, operator_token)
    package_id = _send(client, device, [record(1, "metric", {"name": "fps", "value": 2.0})])
    assert main(["worker", "--once"]) == 0
    assert "processed" in capsys.readouterr().out
    assert _package(backends, package_id).status == "imported"


def test_operators_list_packages_by_status(client: TestClient, operator_token: str, viewer_token: str,
                                           worker: Worker) -> None:
    device = enroll(client, operator_token)
    good = _send(client, device, [record(1, "log", {"message": "a"})])
    bad = _send(client, device, [record(2, "telepathy", {})])
    worker.drain()
    headers = {"Authorization": f"Bearer {viewer_token}"}
    listed = client.get("/api/v1/sync/packages", params={"device_id": device.device_id}, headers=headers).json()
    assert listed["count"] == 2 and {p["id"] for p in listed["items"]} == {good, bad}
    rejected = client.get("/api/v1/sync/packages", params={"device_id": device.device_id, "status": "rejected"},
                          headers=headers).json()
    assert [p["id"] for p in rejected["items"]] == [bad] and "telepathy" in rejected["items"][0]["error"]
    assert client.get("/api/v1/sync/packages", headers=device.headers).status_code == 403


def test_nan_and_infinity_become_null(client: TestClient, operator_token: str, backends: Backends,
                                      worker: Worker) -> None:
    device = enroll(client, operator_token)
    spec = PackageSpec(device.device_id, [], package_id=f"nan-{device.device_id}")
    lines = ('{"seq": 1, "kind": "metric", "data": {"name": "loss", "value": NaN}}\n'
             '{"seq": 2, "kind": "metric", "data": {"metrics": {"a": Infinity, "b": 1.5}}}\n'
             '{"seq": 3, "kind": "drift_event", "data": {"detector": "knn", "statistic": NaN, "vector": [1.0, NaN]}}\n')
    body = _raw_package(spec, lines.encode(), seq_last=3, count=3)
    assert upload(client, device, spec.package_id, body).status_code == 201
    worker.drain()
    assert _package(backends, spec.package_id).status == "imported"
    assert _count(backends, Record, device.device_id) == 3
    assert _count(backends, Metric, device.device_id) == 1
    with backends.sessions() as session:
        event = session.scalars(select(DriftEvent).where(DriftEvent.device_id == device.device_id)).one()
    assert event.statistic is None and event.vector == [1.0, None]


def _raw_package(spec: PackageSpec, records: bytes, seq_last: int, count: int) -> bytes:
    import json

    from tests.server.utils import manifest_for, raw_tar

    spec.manifest_overrides = {"seq_first": 1, "seq_last": seq_last, "record_count": count}
    manifest = manifest_for(spec, {"records.jsonl": records})
    return raw_tar([("manifest.json", json.dumps(manifest).encode()), ("records.jsonl", records)])


def test_imported_packages_are_tagged_for_the_lifecycle_rule(client: TestClient, operator_token: str,
                                                             backends: Backends, worker: Worker) -> None:
    """The raw upload is tagged once its records are in the database, and not before."""
    from minio.commonconfig import Tags

    from server.storage import IMPORTED_TAG
    from server.storage.s3 import S3Store

    store = backends.store
    assert isinstance(store, S3Store)
    device = enroll(client, operator_token)
    package_id = _send(client, device, [record(1, "prediction", {"label": "cat"})])

    def tags() -> dict[str, str]:
        found = store._client.get_object_tags(store.bucket_name("packages"), _package(backends, package_id).object_key)
        return dict(found or Tags.new_object_tags())

    assert IMPORTED_TAG[0] not in tags()
    worker.drain()
    assert _package(backends, package_id).status == "imported"
    assert tags()[IMPORTED_TAG[0]] == IMPORTED_TAG[1]


def test_an_unreachable_queue_is_said_once_and_its_return_once(
    backends: Backends, caplog: pytest.LogCaptureFixture
) -> None:
    """A database outage must not log an error on every retry."""
    import logging

    from sqlalchemy.exc import OperationalError

    outcomes: list[bool | None] = [None] * 4 + [False] + [None] * 2 + [False]
    stop = threading.Event()

    class Flaky(Worker):
        def maintain(self) -> None:
            pass

        def run_once(self) -> bool:
            outcome = outcomes.pop(0)
            if not outcomes:
                stop.set()
            if outcome is None:
                raise OperationalError("SELECT 1", {}, Exception("connection refused"))
            return outcome

    flaky = Flaky(backends)
    flaky.settings = backends.settings.model_copy(update={"worker_poll_s": 0.001})
    caplog.set_level(logging.DEBUG, logger="server.worker.runner")
    flaky.run_forever(stop)
    said = [(r.levelno, r.getMessage().split(",")[0].split(":")[0]) for r in caplog.records
            if r.name == "server.worker.runner" and r.levelno >= logging.INFO]
    assert said == [(logging.ERROR, "job queue unreachable"), (logging.INFO, "job queue reachable again"),
                    (logging.ERROR, "job queue unreachable"), (logging.INFO, "job queue reachable again")]


def _job(backends: Backends, package_id: str) -> Job:
    with backends.sessions() as session:
        return session.scalars(select(Job).where(Job.package_id == package_id)).one()


def test_a_bad_package_in_a_batch_is_rejected_alone(client: TestClient, operator_token: str,
                                                    backends: Backends, worker: Worker) -> None:
    """Packages of several devices share one transaction; one that fails costs the others nothing."""
    worker.drain()
    devices = [enroll(client, operator_token) for _ in range(3)]
    good = [_send(client, devices[0], [record(1, "metric", {"name": "fps", "value": 1.0})]),
            _send(client, devices[1], [drift_record(1, "blobs/a.jpg")], {"a.jpg": JPEG}),
            _send(client, devices[0], [record(2, "log", {"message": "later package of the same device"})])]
    bad = _send(client, devices[2], [record(1, "telepathy", {})])
    assert worker.drain() == 4
    assert [_package(backends, p).status for p in good] == ["imported"] * 3
    assert _package(backends, bad).status == "rejected" and "telepathy" in (_package(backends, bad).error or "")
    assert [_job(backends, p).attempts for p in [*good, bad]] == [1] * 4
    assert _count(backends, Record, devices[0].device_id) == 2
    assert _count(backends, DriftEvent, devices[1].device_id) == 1


def test_jobs_claimed_ahead_are_given_back_when_the_worker_stops(client: TestClient, operator_token: str,
                                                                 backends: Backends) -> None:
    Worker(backends).drain()
    device = enroll(client, operator_token)
    first = _send(client, device, [record(1, "log", {"message": "a"})])
    second = _send(client, device, [record(2, "log", {"message": "b"})])
    one_at_a_time = Worker(backends, batch_size=1)
    assert one_at_a_time.run_once()
    assert _package(backends, first).status == "imported"
    assert (_job(backends, second).state, _job(backends, second).attempts) == ("running", 1)  # claimed ahead
    stop = threading.Event()
    stop.set()
    one_at_a_time.run_forever(stop)  # stops at once: gives the claimed-ahead job back
    assert (_job(backends, second).state, _job(backends, second).attempts) == ("queued", 0)
    assert one_at_a_time.drain(max_jobs=1) == 1
    assert _package(backends, second).status == "imported" and _job(backends, second).attempts == 1


def test_a_claim_taken_over_after_its_lease_is_not_given_back(client: TestClient, operator_token: str,
                                                              backends: Backends) -> None:
    """A worker slower than the lease gives back only what is still its own claim."""
    Worker(backends).drain()
    device = enroll(client, operator_token)
    package = _send(client, device, [record(1, "log", {"message": "a"})])
    with backends.sessions() as session:
        [mine] = queue.claim_many(session, lease_s=600, limit=1)
        session.commit()
    with backends.sessions() as session:  # the lease ran out and another worker took the job
        [theirs] = queue.claim_many(session, lease_s=0, limit=1)
        session.commit()
    assert (mine.id, mine.attempts, theirs.attempts) == (theirs.id, 1, 2)
    with backends.sessions() as session:
        queue.release(session, [mine])
        session.commit()
    assert (_job(backends, package).state, _job(backends, package).attempts) == ("running", 2)
    with backends.sessions() as session:
        queue.release(session, [theirs])
        session.commit()
    assert (_job(backends, package).state, _job(backends, package).attempts) == ("queued", 1)


def test_a_batch_size_below_one_is_refused(backends: Backends) -> None:
    with pytest.raises(ValueError, match="at least 1"):
        Worker(backends, batch_size=0)
