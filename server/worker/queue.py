"""The job queue: rows in `jobs`, claimed with `FOR UPDATE SKIP LOCKED` so workers never collide.

A claimed job carries a lease: a worker that dies mid-job leaves it `running`, and once the lease
is over any worker may claim it again. Failures back off exponentially, then park the job.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import text, tuple_, update
from sqlalchemy.orm import Session

from server.db.models import Job, JobState, Package, PackageStatus

IMPORT_PACKAGE = "import_package"

# Several due jobs in one round trip; each is leased on its own (a worker that dies leaves all of them to the lease).
_CLAIM = text(
    """
    UPDATE jobs SET state = 'running', locked_at = now(), attempts = attempts + 1
    WHERE id IN (
        SELECT id FROM jobs
        WHERE (state = 'queued' AND run_after <= now())
           OR (state = 'running' AND locked_at < now() - make_interval(secs => :lease_s))
        ORDER BY run_after, id
        FOR UPDATE SKIP LOCKED
        LIMIT :limit
    )
    RETURNING id, kind, device_id, package_id, attempts, run_after
    """
)


@dataclass(frozen=True)
class ClaimedJob:
    id: int
    kind: str
    device_id: str  # the package's owner: package ids are unique per device only
    package_id: str
    attempts: int


def enqueue_import(session: Session, device_id: str, package_id: str) -> None:
    """Queue the import of a stored package (in the caller's transaction)."""
    session.add(Job(kind=IMPORT_PACKAGE, device_id=device_id, package_id=package_id))


def claim(session: Session, lease_s: int) -> ClaimedJob | None:
    """Take the next due job, or None; the caller commits."""
    jobs = claim_many(session, lease_s, 1)
    return jobs[0] if jobs else None


def claim_many(session: Session, lease_s: int, limit: int) -> list[ClaimedJob]:
    """Take up to `limit` due jobs, the longest due first, in one statement; the caller commits."""
    if limit < 1:
        raise ValueError(f"claim limit must be at least 1, not {limit}")
    rows = sorted(session.execute(_CLAIM, {"lease_s": lease_s, "limit": limit}),
                  key=lambda row: (row.run_after, row.id))  # RETURNING keeps no order
    return [ClaimedJob(row.id, row.kind, row.device_id, row.package_id, row.attempts) for row in rows]


def complete(session: Session, job_id: int) -> None:
    """Mark a job done."""
    complete_many(session, [job_id])


def complete_many(session: Session, job_ids: list[int]) -> None:
    """Mark jobs done, in one statement."""
    if job_ids:
        session.execute(
            update(Job).where(Job.id.in_(job_ids)).values(state=JobState.done.value, finished_at=datetime.now(UTC))
        )


def release(session: Session, jobs: list[ClaimedJob]) -> None:
    """Give back claimed jobs that were not started: queued again, due now, their claim not counted as an attempt.

    Only claims that are still ours: a job whose lease ran out and that another worker claimed since has a higher
    attempt count, and is left to that worker.
    """
    if jobs:
        session.execute(
            update(Job)
            .where(tuple_(Job.id, Job.attempts).in_([(job.id, job.attempts) for job in jobs]),
                   Job.state == JobState.running.value)
            .values(state=JobState.queued.value, locked_at=None, attempts=Job.attempts - 1,
                    run_after=datetime.now(UTC))
        )


def backoff_s(attempts: int, base_s: float, max_s: float) -> float:
    """Full-jitter exponential backoff after `attempts` failures."""
    ceiling: float = min(max_s, base_s * 2 ** (attempts - 1))
    return random.uniform(ceiling / 2, ceiling)


def retry_later(session: Session, job: ClaimedJob, error: str, delay_s: float) -> None:
    """Put a failed job back in the queue, due after `delay_s` seconds."""
    due = datetime.now(UTC) + timedelta(seconds=delay_s)
    session.execute(
        update(Job)
        .where(Job.id == job.id)
        .values(state=JobState.queued.value, run_after=due, locked_at=None, last_error=error[:4000])
    )


def park(session: Session, job: ClaimedJob, error: str, package_status: PackageStatus) -> None:
    """Stop retrying a job; the package keeps its bytes and shows why."""
    now = datetime.now(UTC)
    session.execute(
        update(Job)
        .where(Job.id == job.id)
        .values(state=JobState.parked.value, finished_at=now, locked_at=None, last_error=error[:4000])
    )
    session.execute(
        update(Package)
        .where(Package.device_id == job.device_id, Package.id == job.package_id)
        .values(status=package_status.value, error=error[:4000])
    )


def requeue_parked(session: Session, package_id: str | None = None, device_id: str | None = None) -> int:
    """Give parked jobs (all, or those of a package id and/or a device) a fresh set of attempts; how many."""
    query = update(Job).where(Job.state == JobState.parked.value)
    if package_id is not None:
        query = query.where(Job.package_id == package_id)
    if device_id is not None:
        query = query.where(Job.device_id == device_id)
    rows = session.execute(
        query.values(state=JobState.queued.value, attempts=0, run_after=datetime.now(UTC), finished_at=None)
        .returning(Job.device_id, Job.package_id)
    ).all()
    keys = [(row.device_id, row.package_id) for row in rows]
    if keys:
        session.execute(
            update(Package)
            .where(tuple_(Package.device_id, Package.id).in_(keys))
            .values(status=PackageStatus.queued.value, error=None)
        )
    return len(keys)
