"""The MLflow record of the fleet: one experiment per device, one run per imported package."""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass

from mlflow.entities import Metric, Param
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from server.errors import MlflowUnavailableError

logger = logging.getLogger(__name__)
PACKAGE_TAG = "tinysphere.package_id"
_BATCH = 1000


@dataclass(frozen=True)
class MetricPoint:
    """One metric value as MLflow wants it: step is the record's sequence number."""

    name: str
    value: float
    timestamp_ms: int
    step: int


def configure_http(timeout_s: int, max_retries: int) -> None:
    """Bound MLflow's HTTP calls; its client only reads these settings from the environment."""
    os.environ["MLFLOW_HTTP_REQUEST_TIMEOUT"] = str(timeout_s)
    os.environ["MLFLOW_HTTP_REQUEST_MAX_RETRIES"] = str(max_retries)
    os.environ["MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR"] = "1"


class MlflowBridge:
    """Writes package runs to an MLflow tracking store; every failure becomes `MlflowUnavailableError`."""

    def __init__(self, tracking_uri: str, artifact_root: str | None = None) -> None:
        self.tracking_uri = tracking_uri
        self._artifact_root = artifact_root
        self._client = MlflowClient(tracking_uri=tracking_uri)
        self._experiments: dict[str, str] = {}  # device id -> experiment id; ids never change

    def experiment_id(self, device_id: str) -> str:
        """The experiment of one device, created on first use."""
        if device_id in self._experiments:
            return self._experiments[device_id]
        name = f"device-{device_id}"
        experiment = self._client.get_experiment_by_name(name)
        if experiment is not None:
            self._experiments[device_id] = str(experiment.experiment_id)
            return self._experiments[device_id]
        location = f"{self._artifact_root}/{name}" if self._artifact_root else None
        try:
            created = str(self._client.create_experiment(name, artifact_location=location))
        except MlflowException as exc:  # another worker created it meanwhile
            experiment = self._client.get_experiment_by_name(name)
            if experiment is None:
                raise exc from None
            created = str(experiment.experiment_id)
        self._experiments[device_id] = created
        return created

    def record_package(
        self, device_id: str, package_id: str, params: dict[str, str], metrics: Sequence[MetricPoint]
    ) -> str:
        """Log one finished run for a package; a retried import replaces an unfinished run."""
        try:
            return self._record(device_id, package_id, params, metrics)
        except MlflowUnavailableError:
            raise
        except Exception as exc:  # noqa: BLE001 - MLflow raises anything from requests to its own errors
            raise MlflowUnavailableError(f"{type(exc).__name__}: {exc}") from exc

    def _record(
        self, device_id: str, package_id: str, params: dict[str, str], metrics: Sequence[MetricPoint]
    ) -> str:
        experiment_id = self.experiment_id(device_id)
        existing = self._client.search_runs(
            [experiment_id], filter_string=f"tags.`{PACKAGE_TAG}` = '{package_id}'", max_results=10
        )
        for run in existing:
            if run.info.status == "FINISHED":
                return str(run.info.run_id)
            self._client.delete_run(run.info.run_id)
        tags = {PACKAGE_TAG: package_id, "tinysphere.device_id": device_id}
        run = self._client.create_run(experiment_id, tags=tags, run_name=package_id)
        run_id = str(run.info.run_id)
        points = [Metric(m.name, m.value, m.timestamp_ms, m.step) for m in metrics]
        first = _BATCH - len(params)  # params ride along with the first batch of metrics
        self._client.log_batch(run_id, params=[Param(k, v) for k, v in params.items()], metrics=points[:first])
        for start in range(first, len(points), _BATCH):
            self._client.log_batch(run_id, metrics=points[start : start + _BATCH])
        self._client.set_terminated(run_id, "FINISHED")
        logger.info("mlflow run %s for package %s (%d metric points)", run_id, package_id, len(metrics))
        return run_id

    def ping(self) -> None:
        """Raise `MlflowUnavailableError` if the tracking store cannot be reached."""
        try:
            self._client.search_experiments(max_results=1)
        except Exception as exc:  # noqa: BLE001
            raise MlflowUnavailableError(f"{type(exc).__name__}: {exc}") from exc


