"""The MLflow record of the fleet, fed off the import path: one run per (device, model version).

Runs are laid out by `server.tracking.runs` (experiment `fleet/<model>`, tags for the device, the model and
the rollout). Metrics are series: step = the device's frame counter or record seq, timestamp = the device's
record time. Drift samples become artifacts `drift/<day>/<seq>.<ext>` and logs `logs/<day>/<first>-<last>.jsonl`
of the device's run, so they are grouped per device and day, not per package.

Delivery is best effort. An import hands its batch to `MlflowBridge.add` after its transaction committed;
a flusher thread sends what waits, per run, with `log_batch` (at most 1000 metrics a call) every
`flush_interval_s` or as soon as `flush_points` wait. The database stays the source of truth: MLflow holds
derived data, and a crash between the commit and the flush loses those points from MLflow only. While MLflow
is down the points wait (at most `max_pending` per run, the oldest dropped first) and the flusher backs off.
A batch sent twice (its answer lost) does not duplicate: MLflow's SQL tracking store skips a metric equal in
key, step, timestamp and value to one the run already has (tests/server/test_mlflow_runs.py checks it).
"""

from __future__ import annotations

import logging
import os
import tempfile
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from mlflow.entities import Metric, RunTag
from mlflow.entities import Run as MlflowRun
from mlflow.store.artifact.artifact_repo import ArtifactRepository
from mlflow.store.artifact.artifact_repository_registry import get_artifact_repository
from mlflow.tracking import MlflowClient

from server.errors import MlflowUnavailableError
from server.tracking.runs import RunDirectory, RunKey

logger = logging.getLogger(__name__)
_BATCH = 1000  # MLflow's limit of metrics per log_batch
_MAX_BACKOFF_S = 300.0
_ARTIFACT_TRIES = 3  # flushes that may fail to upload a batch's artifacts before they are dropped


@dataclass(frozen=True)
class Sample:
    """A drift sample's bytes, for the artifact `drift/<day>/<name>`."""

    day: str
    name: str
    data: bytes


@dataclass(frozen=True)
class LogLine:
    """One log record as a JSON line, for the artifact `logs/<day>/...`."""

    day: str
    seq: int
    line: str


@dataclass
class RunBatch:
    """What waits for one run: its tags (the latest win) and the points, samples and log lines not yet sent."""

    key: RunKey
    tags: dict[str, str]
    metrics: list[Metric] = field(default_factory=list)
    samples: list[Sample] = field(default_factory=list)
    logs: list[LogLine] = field(default_factory=list)
    artifact_failures: int = 0

    def merge(self, later: RunBatch, limit: int) -> int:
        """Append `later`, keep at most `limit` of each list (the newest); returns how many were dropped."""
        self.tags = {**self.tags, **later.tags}
        dropped = 0
        for name in ("metrics", "samples", "logs"):
            items = getattr(self, name) + getattr(later, name)
            dropped += max(0, len(items) - limit)
            setattr(self, name, items[-limit:])
        return dropped

    def size(self) -> int:
        return len(self.metrics) + len(self.samples) + len(self.logs)


def configure_http(timeout_s: int, max_retries: int) -> None:
    """Bound MLflow's HTTP calls; its client only reads these settings from the environment. MLflow's client also
    records usage telemetry for its vendor: off unless the operator set `MLFLOW_DISABLE_TELEMETRY` otherwise."""
    os.environ["MLFLOW_HTTP_REQUEST_TIMEOUT"] = str(timeout_s)
    os.environ["MLFLOW_HTTP_REQUEST_MAX_RETRIES"] = str(max_retries)
    os.environ["MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR"] = "1"
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")


class MlflowBridge:
    """Accumulates run batches per device and sends them from a flusher thread; safe to call from any thread."""

    def __init__(self, tracking_uri: str, artifact_root: str | None = None, *, flush_interval_s: float = 5.0,
                 flush_points: int = 5000, max_pending: int = 50_000) -> None:
        self.tracking_uri = tracking_uri
        self.flush_interval_s = flush_interval_s
        self.flush_points = flush_points
        self.max_pending = max_pending
        self._client = MlflowClient(tracking_uri=tracking_uri)
        self.runs = RunDirectory(self._client, artifact_root)
        self._pending: dict[RunKey, RunBatch] = {}
        self._lock = threading.Lock()  # guards _pending
        self._flush_lock = threading.Lock()  # one flush at a time; it alone uses self.runs
        self._wake = threading.Event()
        self._closed = threading.Event()
        self._thread: threading.Thread | None = None
        self._failures = 0  # consecutive failed flushes, for the backoff
        self._opened: list[tuple[RunKey, str]] = []  # runs resolved for the first time, until `take_opened`
        self._artifact_repositories: dict[str, ArtifactRepository] = {}  # by run id; used under the flush lock

    def add(self, batches: Iterable[RunBatch]) -> None:
        """Queue committed data for MLflow; never blocks on MLflow."""
        with self._lock:
            for batch in batches:
                waiting = self._pending.setdefault(batch.key, RunBatch(batch.key, {}))
                dropped = waiting.merge(batch, self.max_pending)
                if dropped:
                    logger.warning("mlflow backlog of %s full: dropped %d oldest items", batch.key, dropped)
            waiting_total = sum(b.size() for b in self._pending.values())
            if self._thread is None and not self._closed.is_set():
                self._thread = threading.Thread(target=self._loop, name="mlflow-flusher", daemon=True)
                self._thread.start()
        if waiting_total >= self.flush_points:
            self._wake.set()

    @property
    def client(self) -> MlflowClient:
        """The tracking client (for one-shot tools such as `server.tracking.migrate`)."""
        return self._client

    def waiting(self) -> set[tuple[str, str]]:
        """The (device id, version) of every run with a batch waiting to be sent."""
        with self._lock:
            return {(key.device_id, key.version) for key in self._pending}

    def take_opened(self) -> list[tuple[RunKey, str]]:
        """The runs (key, run id) this bridge found or created since the last call, for the database to keep."""
        with self._lock:
            opened, self._opened = self._opened, []
        return opened

    def pending(self) -> int:
        """How many metrics, samples and log lines wait to be sent."""
        with self._lock:
            return sum(b.size() for b in self._pending.values())

    def flush(self) -> bool:
        """Send everything that waits; True if all of it reached MLflow.

        The first run that fails ends this flush (MLflow is likely down): it and the rest wait for the next."""
        with self._flush_lock:
            with self._lock:
                taken, self._pending = list(self._pending.values()), {}
            for done, batch in enumerate(taken):
                try:
                    self._send(batch)
                except Exception as exc:  # noqa: BLE001 - MLflow raises anything from requests to its own errors
                    logger.warning("mlflow flush for %s failed, %d runs kept for later: %s: %s", batch.key,
                                   len(taken) - done, type(exc).__name__, exc)
                    self._requeue(taken[done:])
                    self._failures += 1
                    return False
            self._failures = 0
            return True

    def _requeue(self, batches: list[RunBatch]) -> None:
        """Put unsent batches back in front of what was added meanwhile."""
        with self._lock:
            for batch in batches:
                later = self._pending.pop(batch.key, None)
                if later is not None:
                    batch.merge(later, self.max_pending)
                self._pending[batch.key] = batch

    def close(self) -> None:
        """Stop the flusher and send what waits."""
        self._closed.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=60)
        self.flush()

    def runs_of_version(self, model: str, version: str) -> list[MlflowRun]:
        """The fleet's runs on one model version."""
        with self._flush_lock:
            return self.runs.runs_of_version(model, version)

    def runs_of_device(self, device_id: str) -> list[MlflowRun]:
        """The runs of one device, one per model version it ran."""
        with self._flush_lock:
            return self.runs.runs_of_device(device_id)

    def ping(self) -> None:
        """Raise `MlflowUnavailableError` if the tracking store cannot be reached."""
        try:
            self._client.search_experiments(max_results=1)
        except Exception as exc:  # noqa: BLE001
            raise MlflowUnavailableError(f"{type(exc).__name__}: {exc}") from exc

    def _loop(self) -> None:
        while not self._closed.is_set():
            delay = min(self.flush_interval_s * 2**self._failures, _MAX_BACKOFF_S)
            self._wake.wait(delay)
            self._wake.clear()
            if not self._closed.is_set():
                started = time.monotonic()
                self.flush()
                logger.debug("mlflow flush took %.2fs", time.monotonic() - started)

    def _send(self, batch: RunBatch) -> None:
        """Send one run's batch; what was sent leaves the batch, so a failure keeps only the rest."""
        first = not self.runs.cached(batch.key)
        run_id = self.runs.run_id(batch.key, batch.tags)
        if first:
            with self._lock:
                self._opened.append((batch.key, run_id))
        known = self.runs.tags.setdefault(run_id, {})
        changed = [RunTag(k, v) for k, v in batch.tags.items() if known.get(k) != v]
        while batch.metrics or changed:
            chunk = batch.metrics[:_BATCH]
            self._client.log_batch(run_id, metrics=chunk, tags=changed)
            known.update({t.key: t.value for t in changed})
            del batch.metrics[: len(chunk)]
            changed = []
        if not (batch.samples or batch.logs):
            return
        try:
            with tempfile.TemporaryDirectory(prefix="tinysphere-mlflow-") as tmp:
                self._write_artifacts(run_id, batch, Path(tmp))
        except Exception:
            batch.artifact_failures += 1
            if batch.artifact_failures < _ARTIFACT_TRIES:
                raise
            logger.exception("mlflow artifacts of %s dropped after %d failed uploads: %d samples, %d log lines",
                             batch.key, batch.artifact_failures, len(batch.samples), len(batch.logs))
        batch.samples, batch.logs, batch.artifact_failures = [], [], 0

    def _write_artifacts(self, run_id: str, batch: RunBatch, root: Path) -> None:
        for sample in batch.samples:
            path = root / "drift" / sample.day / sample.name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(sample.data)
        for day in sorted({line.day for line in batch.logs}):
            lines = sorted((line for line in batch.logs if line.day == day), key=lambda line: line.seq)
            path = root / "logs" / day / f"{lines[0].seq}-{lines[-1].seq}.jsonl"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text("".join(line.line + "\n" for line in lines))
        repository = self._artifact_repository(run_id)
        for top in sorted(p.name for p in root.iterdir()):
            for day_dir in sorted((root / top).iterdir()):
                if repository is None:
                    self._client.log_artifacts(run_id, str(day_dir), f"{top}/{day_dir.name}")
                else:
                    repository.log_artifacts(str(day_dir), f"{top}/{day_dir.name}")

    def _artifact_repository(self, run_id: str) -> ArtifactRepository | None:
        """The artifact store of a run whose location the run's lookup gave, kept for as long as the bridge: the
        client's own lookup asks MLflow for the run first, and keeps only the last 1024 runs it asked for."""
        if run_id not in self._artifact_repositories:
            uri = self.runs.artifact_uris.get(run_id)
            if uri is None:
                return None
            self._artifact_repositories[run_id] = get_artifact_repository(uri, tracking_uri=self.tracking_uri)
        return self._artifact_repositories[run_id]
