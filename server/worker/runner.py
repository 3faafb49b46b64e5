"""The worker loop: claim a job, fetch and unpack its package, import it, settle the job.

Between jobs it also steps the rollout controller and keeps the online TUF metadata fresh.

Bad packages are rejected at once (retrying cannot help); failures of PostgreSQL or the object
store are retried with backoff and parked after `job_max_attempts`. Nothing is deleted.

MLflow is off this path: a committed import hands its batch to the bridge, whose flusher thread sends it
(`server.tracking.bridge`); an MLflow outage delays the MLflow record, never an import. `drain` flushes
before it returns, and `run_forever` when it stops.
"""

from __future__ import annotations

import logging
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from server.backends import Backends
from server.db.models import Package, PackageStatus
from server.errors import ConflictError, NotFoundError, PackageError, StorageUnavailableError
from server.registry import repository
from server.rollouts import controller
from server.worker import queue
from server.worker.importers import import_package
from server.worker.unpack import Limits, unpack

logger = logging.getLogger(__name__)


class Worker:
    """Processes import jobs with the given backends; several may run against one database."""

    def __init__(self, backends: Backends) -> None:
        self.backends = backends
        self.settings = backends.settings
        self.limits = Limits(self.settings.max_unpacked_bytes, self.settings.max_package_members)
        self._next_maintenance = 0.0  # monotonic time of the next rollout/metadata round

    def run_once(self) -> bool:
        """Process at most one due job; False when the queue had nothing due."""
        with self.backends.sessions() as session:
            job = queue.claim(session, self.settings.job_lease_s)
            session.commit()
        if job is None:
            return False
        if job.kind != queue.IMPORT_PACKAGE:
            self._settle(lambda s: queue.park(s, job, f"unknown job kind {job.kind!r}", PackageStatus.parked))
            return True
        try:
            self._import(job)
        except (PackageError, ConflictError) as exc:
            reason = str(exc)
            logger.warning("package %s of %s rejected: %s", job.package_id, job.device_id, reason)
            self._settle(lambda s: queue.park(s, job, reason, PackageStatus.rejected))
        except Exception as exc:
            self._failed(job, exc)
        return True

    def run_forever(self, stop: threading.Event, tick: Callable[[], None] | None = None) -> None:
        """Poll the queue until `stop` is set; an unreachable database only delays. `tick` runs each round."""
        delay = self.settings.worker_poll_s
        unreachable = False  # said once when the database goes away, once when it is back
        while not stop.is_set():
            if tick is not None:
                tick()
            self.maintain()
            try:
                busy = self.run_once()
                delay = self.settings.worker_poll_s
                if unreachable:
                    logger.info("job queue reachable again")
                    unreachable = False
            except SQLAlchemyError as exc:
                logger.log(logging.DEBUG if unreachable else logging.ERROR,
                           "job queue unreachable, retrying with backoff (up to 30 s) until it is back: %s", exc)
                unreachable = True
                busy = False
                delay = min(delay * 2, 30.0)
            if not busy:
                stop.wait(delay)
        if self.backends.mlflow is not None:
            self.backends.mlflow.flush()

    def maintain(self) -> None:
        """Step the rollouts and re-sign expiring TUF metadata, at most every `rollout_tick_s`."""
        now = time.monotonic()
        if now < self._next_maintenance:
            return
        self._next_maintenance = now + self.settings.rollout_tick_s
        try:
            controller.tick(self.backends)
            with self.backends.sessions() as session:
                if repository.refresh_online(session, self.settings):
                    session.commit()
        except Exception:  # noqa: BLE001 - the next round tries again; the import loop must go on
            logger.exception("rollout controller or metadata refresh failed")

    def drain(self, max_jobs: int = 10_000) -> int:
        """Run every job that is due now; returns how many ran (tests, `worker --once`)."""
        count = 0
        while count < max_jobs and self.run_once():
            count += 1
        if self.backends.mlflow is not None:
            self.backends.mlflow.flush()
        return count

    def _import(self, job: queue.ClaimedJob) -> None:
        with tempfile.TemporaryDirectory(prefix="tinysphere-import-") as tmp:
            workdir = Path(tmp)
            with self.backends.sessions() as session:
                package = session.get(Package, {"device_id": job.device_id, "id": job.package_id})
                if package is None:
                    raise PackageError("package row is missing", job.package_id)
                archive = workdir / "package.tar.gz"
                with archive.open("wb") as target:
                    self.backends.store.download("packages", package.object_key, target)
                unpacked = unpack(archive, workdir / "files", self.limits, package.device_id, package.id)
                mlflow = self.backends.mlflow
                summary = import_package(session, self.backends.store, package, unpacked,
                                         with_mlflow=mlflow is not None)
                queue.complete(session, job.id)
                session.commit()
                object_key = package.object_key
        if mlflow is not None:
            mlflow.add(summary.mlflow)
        self._mark_imported(object_key)
        logger.info("imported package %s of %s: %d records, %d new", job.package_id, job.device_id, summary.total,
                    summary.new)

    def _mark_imported(self, object_key: str) -> None:
        """Let the `packages` lifecycle rule expire the raw upload; its records are in the database now."""
        try:
            self.backends.store.mark_imported("packages", object_key)
        except (StorageUnavailableError, NotFoundError) as exc:  # the package is kept; nothing is lost
            logger.warning("could not tag imported package %s: %s", object_key, exc)

    def _failed(self, job: queue.ClaimedJob, exc: Exception) -> None:
        error = f"{type(exc).__name__}: {exc}"
        if job.attempts >= self.settings.job_max_attempts:
            logger.error("package %s of %s parked after %d attempts: %s", job.package_id, job.device_id,
                         job.attempts, error)
            self._settle(lambda s: queue.park(s, job, error, PackageStatus.parked))
            return
        delay = queue.backoff_s(job.attempts, self.settings.job_backoff_base_s, self.settings.job_backoff_max_s)
        logger.warning("package %s of %s failed (attempt %d), retry in %.1fs: %s", job.package_id, job.device_id,
                       job.attempts, delay, error)
        self._settle(lambda s: queue.retry_later(s, job, error, delay))

    def _settle(self, action: Callable[[Session], None]) -> None:
        try:
            with self.backends.sessions() as session:
                action(session)
                session.commit()
        except SQLAlchemyError as exc:  # the lease brings the job back once the database returns
            logger.error("could not record job outcome: %s", exc)
