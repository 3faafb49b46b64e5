"""One-shot migration of an existing MLflow store: per-package runs fold into per-(device, version) runs.

Before, every imported package had its own run (tag `tinysphere.package_id`) in an experiment `device-<id>`.
`migrate` copies each such run's metric series into the run of its device and model version (the version of
each point is that of its record in the database, `step` being the record's seq), then tags the old run with
where it went and deletes it; an experiment left without runs is deleted too. Deleted runs and experiments
stay restorable in MLflow until its garbage collection. Running it again is safe: a run is deleted only
after its points were sent, and points sent twice are kept once by MLflow's SQL store.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass

from mlflow.entities import Experiment, Metric, Run
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from server.db.models import Device, Record
from server.errors import MlflowUnavailableError
from server.tracking import feed as mlflow_feed
from server.tracking.bridge import MlflowBridge
from server.tracking.runs import TAG_DEVICE_ID, safe_name

logger = logging.getLogger(__name__)
PACKAGE_TAG = "tinysphere.package_id"  # the tag of the old per-package runs
MIGRATED_TAG = "tinysphere.migrated_to"  # set on an old run: the run ids its points went to


@dataclass
class Migrated:
    """What `migrate` did."""

    runs: int = 0
    points: int = 0
    experiments: int = 0


def migrate(bridge: MlflowBridge, sessions: sessionmaker[Session], device_ids: Iterable[str] | None = None) -> Migrated:
    """Fold the per-package runs (of `device_ids`, default all) into per-(device, version) runs.

    Raises `MlflowUnavailableError` if MLflow does not take the points."""
    client = bridge.client
    done = Migrated()
    for experiment in _experiments(bridge, device_ids):
        for run in _package_runs(bridge, experiment.experiment_id):
            done.points += _fold(bridge, sessions, run)
            done.runs += 1
        if not client.search_runs([experiment.experiment_id], max_results=1):
            client.delete_experiment(experiment.experiment_id)
            done.experiments += 1
    logger.info("mlflow migration: %d package runs (%d points) folded, %d experiments deleted", done.runs,
                done.points, done.experiments)
    return done


def _experiments(bridge: MlflowBridge, device_ids: Iterable[str] | None) -> list[Experiment]:
    """The old per-device experiments still active."""
    if device_ids is None:
        return list(bridge.client.search_experiments(filter_string="name LIKE 'device-%'", max_results=50_000))
    found = (bridge.client.get_experiment_by_name(f"device-{device_id}") for device_id in device_ids)
    return [e for e in found if e is not None and e.lifecycle_stage == "active"]


def _package_runs(bridge: MlflowBridge, experiment_id: str) -> list[Run]:
    runs: list[Run] = []
    token = None
    while True:
        page = bridge.client.search_runs([experiment_id], max_results=1000, page_token=token)
        runs.extend(r for r in page if PACKAGE_TAG in r.data.tags and TAG_DEVICE_ID in r.data.tags)
        token = page.token
        if not token:
            return runs


def _fold(bridge: MlflowBridge, sessions: sessionmaker[Session], run: Run) -> int:
    """Send one old run's points to their runs, then delete it; returns how many points it had."""
    client = bridge.client
    device_id = run.data.tags[TAG_DEVICE_ID]
    points = [m for key in run.data.metrics for m in client.get_metric_history(run.info.run_id, key)]
    with sessions() as session:
        device = session.get(Device, device_id)
        versions = _record_versions(session, device_id, run.data.tags[PACKAGE_TAG])
        fallback = safe_name(device.model_version if device else None)
        by_version: dict[str, list[Metric]] = defaultdict(list)
        for point in points:
            by_version[versions.get(point.step, fallback)].append(point)
        batches = []
        for version, metrics in by_version.items():
            batch = mlflow_feed.run_batch(session, device_id, device, version)
            batch.metrics = [Metric(m.key, m.value, m.timestamp, m.step) for m in metrics]
            batches.append(batch)
    bridge.add(batches)
    if not bridge.flush():
        raise MlflowUnavailableError(f"could not send the points of run {run.info.run_id}")
    targets = sorted({bridge.runs.run_id(b.key, b.tags) for b in batches})
    client.set_tag(run.info.run_id, MIGRATED_TAG, ",".join(targets))
    client.delete_run(run.info.run_id)
    return len(points)


def _record_versions(session: Session, device_id: str, package_id: str) -> dict[int, str]:
    """The model version each record of a package named, by seq."""
    rows = session.execute(select(Record.seq, Record.data["model_version"].astext)
                           .where(Record.device_id == device_id, Record.package_id == package_id))
    return {seq: safe_name(version) for seq, version in rows if version}
