"""The worker loop: claim a few jobs at once, fetch and unpack their packages, import them, settle the jobs.

The jobs of one claim (`batch_size`, one round trip) are downloaded and unpacked a few at a time while the claim
before them is imported, and imported in one transaction (one commit); the lifecycle tags of their raw uploads
are written in the background afterwards. Jobs claimed ahead are given back when the worker stops. A package that
fails in a batch rolls the batch back, and each of its packages is then imported on its own, so a bad package is
rejected exactly as if it had come alone.

Between jobs it also steps the rollout controller and keeps the online TUF metadata fresh.

Bad packages are rejected at once (retrying cannot help); failures of PostgreSQL or the object
store are retried with backoff and parked after `job_max_attempts`. Nothing is deleted.

MLflow is off this path: a committed import hands its batch to the bridge, whose flusher thread sends it
(`server.tracking.bridge`); an MLflow outage delays the MLflow record, never an import. `drain` flushes
before it returns, and `run_forever` when it stops. Every `run_scan_s`, `run_forever` also asks the bridge for
the run of each model version a heartbeat reported that has no run yet (`server.tracking.reported`).
"""

from __future__ import annotations

import logging
import shutil
import tempfile
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from functools import partial
from pathlib import Path

from sqlalchemy import select, tuple_
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from server.backends import Backends
from server.db.models import Package, PackageStatus
from server.errors import ConflictError, NotFoundError, PackageError, StorageUnavailableError
from server.registry import repository
from server.rollouts import controller
from server.tracking import reported
from server.worker import queue
from server.worker.importers import ObjectWrites, import_packages
from server.worker.unpack import Limits, UnpackedPackage, unpack

logger = logging.getLogger(__name__)


_BATCH_JOBS = 8  # jobs claimed in one round trip and imported in one transaction
_FETCH_THREADS = 4  # packages downloaded and unpacked at once, ahead of their import
_STORE_THREADS = 8  # object writes (blobs, lifecycle tags) at once
_RUN_SCAN_S = 10.0  # how often the devices' reported model versions are checked for a missing MLflow run


@dataclass(frozen=True)
class _Fetched:
    object_key: str
    unpacked: UnpackedPackage


@dataclass(frozen=True)
class _Claimed:
    """The import jobs of one claim, with their packages being downloaded and unpacked under `workdir`."""

    jobs: list[queue.ClaimedJob]
    workdir: Path
    fetches: dict[int, Future[_Fetched]]  # by job id


class Worker:
    """Processes import jobs with the given backends; several may run against one database."""

    def __init__(self, backends: Backends, batch_size: int = _BATCH_JOBS) -> None:
        if batch_size < 1:
            raise ValueError(f"batch size must be at least 1, not {batch_size}")
        self.backends = backends
        self.settings = backends.settings
        self.limits = Limits(self.settings.max_unpacked_bytes, self.settings.max_package_members)
        self.batch_size = batch_size
        self._next_maintenance = 0.0  # monotonic time of the next rollout/metadata round
        self.run_scan_s = _RUN_SCAN_S
        self._next_run_scan = 0.0  # monotonic time of the next scan for reported versions without a run
        self._fetch_pool = ThreadPoolExecutor(_FETCH_THREADS, thread_name_prefix="worker-fetch")
        self._store_pool = ThreadPoolExecutor(_STORE_THREADS, thread_name_prefix="worker-store")
        self._tagging: list[Future[None]] = []  # lifecycle tags of imported packages, written in the background
        self._cleanup: list[Future[None]] = []  # work directories being removed
        self._ahead: tuple[int, _Claimed | None] | None = None  # the next claim, fetched while the last is imported

    def run_once(self) -> bool:
        """Process the due jobs of one claim (at most `batch_size`); False when the queue had nothing due.

        The next claim is made (and its packages fetched) meanwhile; the next call imports it."""
        return self._run_batch() > 0

    def _run_batch(self) -> int:
        """Import the batch claimed ahead (else claim one), claiming and fetching the next one meanwhile."""
        claimed, current = self._ahead if self._ahead is not None else self._claim()
        self._ahead = None
        if current is None:
            return claimed
        try:
            try:
                ahead = self._claim()  # its packages download while this batch is imported
                self._ahead = ahead if ahead[0] else None
            except SQLAlchemyError as exc:  # the batch in hand is imported (or fails) on its own
                logger.warning("could not claim the next jobs: %s", exc)
            self._import_batch(current)
        finally:  # the unpacked files go in the background: thousands of unlinks are no import's business
            self._cleanup = [f for f in self._cleanup if not f.done()]
            self._cleanup.append(self._fetch_pool.submit(shutil.rmtree, current.workdir, True))
        return claimed

    def _claim(self) -> tuple[int, _Claimed | None]:
        """Claim up to `batch_size` jobs and start fetching their packages: how many, and the imports among them."""
        with self.backends.sessions() as session:
            jobs = queue.claim_many(session, self.settings.job_lease_s, self.batch_size)
            session.commit()
        imports = [job for job in jobs if job.kind == queue.IMPORT_PACKAGE]
        for job in jobs:
            if job.kind != queue.IMPORT_PACKAGE:
                self._settle(partial(queue.park, job=job, error=f"unknown job kind {job.kind!r}",
                                     package_status=PackageStatus.parked))
        if not imports:
            return len(jobs), None
        workdir = Path(tempfile.mkdtemp(prefix="tinysphere-import-"))
        try:
            with self.backends.sessions() as session:
                keys = {(row.device_id, row.id): row.object_key for row in session.execute(
                    select(Package.device_id, Package.id, Package.object_key)
                    .where(tuple_(Package.device_id, Package.id).in_([(j.device_id, j.package_id) for j in imports])))}
        except SQLAlchemyError:
            shutil.rmtree(workdir, ignore_errors=True)
            raise
        fetches = {job.id: self._fetch_pool.submit(self._fetch, job, keys.get((job.device_id, job.package_id)),
                                                   workdir / str(job.id)) for job in imports}
        return len(jobs), _Claimed(imports, workdir, fetches)

    def _release_ahead(self) -> None:
        """Give back the jobs claimed ahead and not started (the worker stops): due again at once."""
        if self._ahead is None or self._ahead[1] is None:
            self._ahead = None
            return
        batch = self._ahead[1]
        self._ahead = None
        for future in batch.fetches.values():
            future.cancel()
        wait(list(batch.fetches.values()))
        shutil.rmtree(batch.workdir, ignore_errors=True)
        self._settle(partial(queue.release, jobs=batch.jobs))

    def _import_batch(self, batch: _Claimed) -> None:
        """Import the fetched packages of a claim in one transaction, one package per device at a time.

        If any of them fails there, the transaction is rolled back and each is imported again on its own, so
        one bad package is rejected (or retried) as if it had come alone and costs the others nothing."""
        jobs, fetches = batch.jobs, batch.fetches
        ready: list[tuple[queue.ClaimedJob, _Fetched]] = []
        for job in jobs:
            try:
                ready.append((job, fetches[job.id].result()))
            except Exception as exc:  # noqa: BLE001 - settled like a failed import
                self._settle_failure(job, exc)
        while ready:  # one package per device in a transaction: a device's packages go in their order
            firsts: dict[str, tuple[queue.ClaimedJob, _Fetched]] = {}
            later: list[tuple[queue.ClaimedJob, _Fetched]] = []
            for item in ready:
                if item[0].device_id in firsts:
                    later.append(item)
                else:
                    firsts[item[0].device_id] = item
            self._import_or_split(list(firsts.values()))
            ready = later

    def _import_or_split(self, batch: list[tuple[queue.ClaimedJob, _Fetched]]) -> None:
        if len(batch) > 1:
            try:
                self._import(batch)
                return
            except Exception as exc:  # noqa: BLE001 - each is tried alone below, which settles it
                logger.info("batch of %d packages rolled back, importing them one by one: %s: %s", len(batch),
                            type(exc).__name__, exc)
        for job, fetched in batch:
            try:
                self._import([(job, fetched)])
            except Exception as exc:  # noqa: BLE001
                self._settle_failure(job, exc)

    def _fetch(self, job: queue.ClaimedJob, object_key: str | None, workdir: Path) -> _Fetched:
        """Download and unpack one package (in a fetch thread)."""
        if object_key is None:
            raise PackageError("package row is missing", job.package_id)
        workdir.mkdir()
        archive = workdir / "package.tar.gz"
        with archive.open("wb") as target:
            self.backends.store.download("packages", object_key, target)
        unpacked = unpack(archive, workdir / "files", self.limits, job.device_id, job.package_id)
        archive.unlink()
        return _Fetched(object_key, unpacked)

    def _settle_failure(self, job: queue.ClaimedJob, exc: Exception) -> None:
        if isinstance(exc, (PackageError, ConflictError)):
            reason = str(exc)
            logger.warning("package %s of %s rejected: %s", job.package_id, job.device_id, reason)
            self._settle(lambda s: queue.park(s, job, reason, PackageStatus.rejected))
        else:
            self._failed(job, exc)

    def run_forever(self, stop: threading.Event, tick: Callable[[], None] | None = None) -> None:
        """Poll the queue until `stop` is set; an unreachable database only delays. `tick` runs each round."""
        delay = self.settings.worker_poll_s
        unreachable = False  # said once when the database goes away, once when it is back
        while not stop.is_set():
            if tick is not None:
                tick()
            self.maintain()
            self._scan_reported_runs()
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
        self._release_ahead()
        self._finish_tagging()
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

    def _scan_reported_runs(self) -> None:
        """`open_reported_runs`, at most every `run_scan_s`; a failure waits for the next round."""
        now = time.monotonic()
        if now < self._next_run_scan:
            return
        self._next_run_scan = now + self.run_scan_s
        try:
            self.open_reported_runs()
        except Exception:  # noqa: BLE001 - the import loop must go on
            logger.exception("scan for reported model versions without an mlflow run failed")

    def open_reported_runs(self) -> int:
        """Ask MLflow (through the bridge, off this thread) for the run of every model version a heartbeat reported
        that has none yet; how many were asked for (`server.tracking.reported`)."""
        if self.backends.mlflow is None:
            return 0
        with self.backends.sessions() as session:
            asked = reported.open_reported_runs(session, self.backends.mlflow)
            session.commit()
        return asked

    def drain(self, max_jobs: int = 10_000) -> int:
        """Run every job that is due now; returns how many ran (tests, `worker --once`)."""
        count = 0
        while count < max_jobs:
            claimed = self._run_batch()
            if not claimed:
                break
            count += claimed
        self._release_ahead()  # when `max_jobs` ended it
        self._finish_tagging()
        if self.backends.mlflow is not None:
            self.backends.mlflow.flush()
        return count

    def _import(self, batch: list[tuple[queue.ClaimedJob, _Fetched]]) -> None:
        """Import fetched packages in one transaction; after it committed, hand their batches to MLflow."""
        mlflow = self.backends.mlflow
        writes = ObjectWrites(self._store_pool)  # every object is written before the commit
        with self.backends.sessions() as session:
            try:
                packages = {(p.device_id, p.id): p for p in session.scalars(
                    select(Package).where(tuple_(Package.device_id, Package.id).in_(
                        [(job.device_id, job.package_id) for job, _ in batch])))}
                items = []
                for job, fetched in batch:
                    package = packages.get((job.device_id, job.package_id))
                    if package is None:
                        raise PackageError("package row is missing", job.package_id)
                    items.append((package, fetched.unpacked))
                summaries = import_packages(session, self.backends.store, items, with_mlflow=mlflow is not None,
                                            writes=writes)
                queue.complete_many(session, [job.id for job, _ in batch])
            except BaseException:
                writes.wait(raise_failure=False)  # none left writing; the import's own error is the one raised
                raise
            writes.wait()  # raises the first failed write, and the transaction is rolled back
            session.commit()
        for (job, fetched), summary in zip(batch, summaries, strict=True):
            if mlflow is not None:
                mlflow.add(summary.mlflow)
            self._tagging.append(self._store_pool.submit(self._mark_imported, fetched.object_key))
            logger.info("imported package %s of %s: %d records, %d new", job.package_id, job.device_id,
                        summary.total, summary.new)
        self._tagging = [future for future in self._tagging if not future.done()]

    def _finish_tagging(self) -> None:
        """Wait for the lifecycle tags written and the work directories removed in the background."""
        for future in self._tagging + self._cleanup:
            future.result()  # _mark_imported logs its own failures; rmtree ignores its own
        self._tagging, self._cleanup = [], []

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
