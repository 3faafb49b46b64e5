"""Where a device's MLflow record lives: one experiment per model, one run per (device, model version).

The experiment `fleet/<model>` holds the runs of every device that ran that model, so one `search_runs` on it
with the version tag lists the fleet's runs on a version (`RunDirectory.runs_of_version`). A run is found
by its tags (the source of truth) and cached in memory; the first time a device reports a version its run
is created, after that it is resumed.
"""

from __future__ import annotations

import contextlib
import re
from dataclasses import dataclass

from mlflow.entities import Run
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

TAG_DEVICE_ID = "tinysphere.device_id"
TAG_DEVICE_NAME = "tinysphere.device_name"
TAG_DEVICE_TAGS = "tinysphere.device_tags"  # the device's tags, comma separated
TAG_MODEL = "tinysphere.model"
TAG_MODEL_VERSION = "tinysphere.model_version"
TAG_BUNDLE_SHA256 = "tinysphere.bundle_sha256"
TAG_ROLLOUT_ID = "tinysphere.rollout_id"
UNKNOWN = "unknown"  # a model name or version the server cannot tell
_UNSAFE = re.compile(r"[^A-Za-z0-9._+-]")


def safe_name(value: str | None) -> str:
    """A model name or version as the runs are keyed by it: filter-safe characters, at most 64 of them."""
    return _UNSAFE.sub("_", value)[:64] if value else UNKNOWN


@dataclass(frozen=True)
class RunKey:
    """Which run a point belongs to."""

    device_id: str
    model: str
    version: str


def experiment_name(model: str) -> str:
    """The experiment of one model's fleet runs."""
    return f"fleet/{model}"


def _key_filter(key: RunKey) -> str:
    return f"tags.`{TAG_DEVICE_ID}` = '{key.device_id}' and tags.`{TAG_MODEL_VERSION}` = '{key.version}'"


class RunDirectory:
    """Finds or creates the run of a `RunKey`; not thread-safe (the bridge calls it under its flush lock)."""

    def __init__(self, client: MlflowClient, artifact_root: str | None = None) -> None:
        self._client = client
        self._artifact_root = artifact_root
        self._experiments: dict[str, str] = {}  # model -> experiment id; ids never change
        self._runs: dict[RunKey, str] = {}  # run ids never change either
        self.tags: dict[str, dict[str, str]] = {}  # run id -> the tags it is known to carry
        self.artifact_uris: dict[str, str] = {}  # run id -> where its artifacts go (never changes either)

    def experiment_id(self, model: str) -> str:
        """The experiment of one model, created on first use."""
        if model in self._experiments:
            return self._experiments[model]
        name = experiment_name(model)
        experiment = self._client.get_experiment_by_name(name)
        if experiment is None:
            location = f"{self._artifact_root}/{name}" if self._artifact_root else None
            with contextlib.suppress(MlflowException):  # another worker may have created it meanwhile
                self._client.create_experiment(name, artifact_location=location)
            experiment = self._client.get_experiment_by_name(name)
            if experiment is None:
                raise MlflowException(f"experiment {name} could not be created")
        self._experiments[model] = str(experiment.experiment_id)
        return self._experiments[model]

    def cached(self, key: RunKey) -> bool:
        """True if the run of `key` was found or created before (no MLflow call to resolve it)."""
        return key in self._runs

    def run_id(self, key: RunKey, tags: dict[str, str]) -> str:
        """The run of `key`: cached, else found by its tags, else created with `tags`."""
        if key in self._runs:
            return self._runs[key]
        experiment_id = self.experiment_id(key.model)
        found = self._search(experiment_id, key)
        if not found:
            created = self._client.create_run(experiment_id, tags=tags, run_name=f"{key.device_id}@{key.version}")
            found = self._search(experiment_id, key)
            # Two workers may create a run for the same key at once: the earliest wins, the others are deleted.
            if found and found[0].info.run_id != created.info.run_id:
                self._client.delete_run(created.info.run_id)
            found = found or [created]
        run = found[0]
        self._runs[key] = str(run.info.run_id)
        self.tags[str(run.info.run_id)] = dict(run.data.tags)
        if run.info.artifact_uri:
            self.artifact_uris[str(run.info.run_id)] = str(run.info.artifact_uri)
        return self._runs[key]

    def _search(self, experiment_id: str, key: RunKey) -> list[Run]:
        runs = self._client.search_runs([experiment_id], filter_string=_key_filter(key), max_results=100)
        return sorted(runs, key=lambda r: (r.info.start_time or 0, r.info.run_id))

    def runs_of_device(self, device_id: str) -> list[Run]:
        """The runs of one device, over every model's experiment."""
        experiments = self._client.search_experiments(filter_string="name LIKE 'fleet/%'", max_results=50_000)
        if not experiments:
            return []
        flt = f"tags.`{TAG_DEVICE_ID}` = '{device_id}'"
        return list(self._client.search_runs([e.experiment_id for e in experiments], filter_string=flt,
                                             max_results=10_000))

    def runs_of_version(self, model: str, version: str) -> list[Run]:
        """The runs of every device that ran `model` at `version`: one search."""
        experiment_id = self.experiment_id(safe_name(model))
        flt = f"tags.`{TAG_MODEL_VERSION}` = '{safe_name(version)}'"
        return list(self._client.search_runs([experiment_id], filter_string=flt, max_results=10_000))
