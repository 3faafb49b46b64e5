"""Singletons under replicas: two of each run at once against one PostgreSQL, each decision is made once.

Every "replica" here has an engine and sessions of its own (as two worker processes would); the calls
are released together by a barrier, round after round, and the decisions are counted in the database.
"""

from __future__ import annotations

import threading
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from server.backends import Backends, open_backends
from server.db.models import RolloutEvent, TufMetadata
from server.registry import repository
from server.rollouts import controller
from server.worker.runner import Worker
from tests.server.registry import fixtures
from tests.server.registry.fixtures import Repo, publish
from tests.server.utils import EnrolledDevice, auth, beat, enroll

T = TypeVar("T")
REPLICAS = 2
repo = fixtures.repo  # the session's TUF repository


@pytest.fixture(scope="module")
def replicas(repo: Repo, database_url: str) -> Iterator[list[Backends]]:
    """Two processes' worth of backends on the session's database (the object store is shared, as MinIO is)."""
    opened = [open_backends(repo.backends.settings, database_url, store=repo.backends.store) for _ in range(REPLICAS)]
    yield opened
    for backends in opened:
        backends.engine.dispose()


@pytest.fixture(scope="module")
def versions(repo: Repo, tmp_path_factory: pytest.TempPathFactory) -> tuple[str, str]:
    tmp = tmp_path_factory.mktemp("singleton-bundles")
    publish(repo, tmp, "6.0.0")
    publish(repo, tmp, "6.1.0")
    return "6.0.0", "6.1.0"


def at_once(calls: list[Callable[[], T]]) -> list[T]:
    """Run the calls in threads released together; re-raise the first error."""
    barrier = threading.Barrier(len(calls))

    def run(call: Callable[[], T]) -> T:
        barrier.wait(timeout=30)
        return call()

    with ThreadPoolExecutor(len(calls)) as pool:
        futures = [pool.submit(run, call) for call in calls]
        return [future.result(timeout=120) for future in futures]


def _rollout(client: TestClient, token: str, version: str, count: int) -> tuple[int, list[EnrolledDevice]]:
    tag = f"singleton-{uuid.uuid4().hex[:8]}"
    fleet = [enroll(client, token, tags=[tag]) for _ in range(count)]
    body = {"model": "digits", "bundle_version": version, "selector": {"tags": [tag]},
            "waves": [{"count": 1, "soak_s": 10}, {"fraction": 0.5, "soak_s": 10}, {"fraction": 1.0, "soak_s": 10}],
            "gates": {"max_drift_alarm_rate": 5.0, "max_error_rate": 0.05, "min_healthy_fraction": 0.9}}
    response = client.post("/api/v1/rollouts", json=body, headers=auth(token))
    assert response.status_code == 201, response.text
    return int(response.json()["id"]), fleet


def _decisions(backends: Backends, rollout_id: int) -> Counter[tuple[int, str]]:
    with backends.sessions() as session:
        rows = session.execute(select(RolloutEvent.wave, RolloutEvent.decision)
                               .where(RolloutEvent.rollout_id == rollout_id)).all()
    return Counter((row.wave, row.decision) for row in rows)


def _tick_all(replicas: list[Backends], now: datetime) -> None:
    at_once([lambda b=b: controller.tick(b, now) for b in replicas])  # type: ignore[misc]


def test_two_controllers_make_each_wave_decision_once(replicas: list[Backends], versions: tuple[str, str],
                                                      client: TestClient, operator_token: str) -> None:
    old, new = versions
    rollout_id, fleet = _rollout(client, operator_token, new, 4)
    for device in fleet:
        beat(client, device, old, "COMMITTED")
    now = datetime.now(UTC)
    for _wave in range(3):
        _tick_all(replicas, now)  # assigns the wave
        for device in [d for d in fleet if beat(client, d, old, "IDLE")["bundle_version"] == new]:
            beat(client, device, new, "PROBATION", latency_ms_p95=42.0)
        _tick_all(replicas, now + timedelta(seconds=1))  # switched: soaking
        now += timedelta(seconds=20)
        _tick_all(replicas, now)  # soaked: the gates pass
    assert _decisions(replicas[0], rollout_id) == Counter({
        (0, "created"): 1, (0, "wave_started"): 1, (0, "wave_passed"): 1, (1, "wave_started"): 1,
        (1, "wave_passed"): 1, (2, "wave_started"): 1, (2, "wave_passed"): 1, (2, "completed"): 1})


def test_two_controllers_roll_a_bad_bundle_back_once(replicas: list[Backends], versions: tuple[str, str],
                                                     client: TestClient, operator_token: str) -> None:
    old, new = versions
    rollout_id, fleet = _rollout(client, operator_token, new, 3)
    for device in fleet:
        beat(client, device, old, "COMMITTED")
    now = datetime.now(UTC)
    _tick_all(replicas, now)
    canaries = [d for d in fleet if beat(client, d, old, "IDLE")["bundle_version"] == new]
    assert len(canaries) == 1
    beat(client, canaries[0], new, "PROBATION", drift_alarm_rate=80.0)
    _tick_all(replicas, now + timedelta(seconds=1))
    _tick_all(replicas, now + timedelta(seconds=30))
    _tick_all(replicas, now + timedelta(seconds=60))
    assert _decisions(replicas[0], rollout_id) == Counter({
        (0, "created"): 1, (0, "wave_started"): 1, (0, "rolled_back"): 1})
    assert beat(client, canaries[0], new, "PROBATION")["bundle_version"] == old


def _latest(backends: Backends) -> dict[str, TufMetadata]:
    with backends.sessions() as session:
        return {role: row for role in repository.ROLES if (row := repository.latest(session, role)) is not None}


def _versions(backends: Backends) -> dict[str, int]:
    return {role: row.version for role, row in _latest(backends).items()}


def test_two_replicas_sign_each_snapshot_and_timestamp_once(replicas: list[Backends],
                                                            versions: tuple[str, str]) -> None:
    """Rounds at the moment the timestamp expires, then at the snapshot's: one replica signs, the other sees it.

    Times follow the stored metadata (other tests of the session may have re-signed it already) and stay
    within weeks of now, so later tests still find metadata to refresh.
    """
    settings = replicas[0].settings.model_copy(update={"tuf_timestamp_expiry_s": 3600})

    def refresh(backends: Backends, now: datetime) -> bool:
        with backends.sessions() as session:
            signed = repository.refresh_online(session, settings, now)
            session.commit()
        return signed

    rounds = 0
    for role in ("timestamp", "timestamp", "snapshot", "timestamp"):
        latest = _latest(replicas[0])
        now = latest[role].expires.astimezone(UTC)
        snapshot_due = latest["snapshot"].expires - now < timedelta(seconds=settings.tuf_snapshot_expiry_s / 2)
        signed = at_once([lambda b=b, now=now: refresh(b, now) for b in replicas])  # type: ignore[misc]
        after = _versions(replicas[0])
        assert sorted(signed) == [False, True], role
        assert after["timestamp"] == latest["timestamp"].version + 1
        assert after["snapshot"] == latest["snapshot"].version + snapshot_due
        assert (after["targets"], after["root"]) == (latest["targets"].version, latest["root"].version)
        rounds += snapshot_due
    assert rounds >= 1  # the snapshot round signed a snapshot


def test_two_workers_maintaining_at_once_decide_once(replicas: list[Backends], versions: tuple[str, str],
                                                     client: TestClient, operator_token: str) -> None:
    """The workers' periodic round (rollout controller + metadata refresh), as `run_forever` calls it."""
    old, new = versions
    rollout_id, fleet = _rollout(client, operator_token, new, 2)
    before = _latest(replicas[0])["timestamp"]
    # A lifetime over twice what is left: the current timestamp is due for re-signing.
    left = max(before.expires - datetime.now(UTC), timedelta(0))
    workers = [Worker(b) for b in replicas]
    for worker in workers:
        worker.settings = worker.settings.model_copy(
            update={"tuf_timestamp_expiry_s": int(2 * left.total_seconds()) + 86400})
    at_once([worker.maintain for worker in workers])
    assert _versions(replicas[0])["timestamp"] == before.version + 1
    assert _decisions(replicas[0], rollout_id) == Counter({(0, "created"): 1, (0, "wave_started"): 1})
    assert sum(beat(client, d, old, "IDLE")["bundle_version"] == new for d in fleet) == 1


def test_replicas_starting_together_print_one_first_admin_token(settings: Any, scratch_database_url: str) -> None:
    """Two API replicas on a new database: exactly one creates and prints the admin token."""
    from sqlalchemy import func

    from server.db.models import ApiToken
    from server.startup import first_admin_token, migrate

    migrate(scratch_database_url, settings)
    for _ in range(5):  # several rounds: the race without the lock lost about 2 times in 3
        pair = [open_backends(settings, scratch_database_url, store=None) for _ in range(REPLICAS)]
        try:
            printed = [t for t in at_once([lambda b=b: first_admin_token(b) for b in pair]) if t]
            with pair[0].sessions() as session:
                assert session.scalar(select(func.count()).select_from(ApiToken)) == 1
                session.execute(ApiToken.__table__.delete())
                session.commit()
        finally:
            for backends in pair:
                backends.close()
        assert len(printed) == 1
