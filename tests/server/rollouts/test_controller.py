"""The rollout controller driven tick by tick with simulated heartbeats and an injected clock."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient

from server.rollouts import controller
from tests.server.registry.fixtures import Repo, publish
from tests.server.utils import GOOD_HEALTH, EnrolledDevice, auth, beat, enroll


@pytest.fixture(scope="module")
def versions(repo: Repo, tmp_path_factory: pytest.TempPathFactory) -> tuple[str, str]:
    tmp = tmp_path_factory.mktemp("rollout-bundles")
    publish(repo, tmp, "3.0.0")
    publish(repo, tmp, "3.1.0")
    return "3.0.0", "3.1.0"


def _fleet(client: TestClient, operator_token: str, tag: str, count: int) -> list[EnrolledDevice]:
    return [enroll(client, operator_token, tags=[tag]) for _ in range(count)]


def _create(client: TestClient, token: str, version: str, tag: str) -> dict[str, Any]:
    body = {"model": "digits", "bundle_version": version, "selector": {"tags": [tag]},
            "waves": [{"count": 1, "soak_s": 10}, {"fraction": 0.5, "soak_s": 10}, {"fraction": 1.0, "soak_s": 10}],
            "gates": {"max_drift_alarm_rate": 5.0, "max_error_rate": 0.05, "max_p95_latency_ratio": 1.5,
                      "min_healthy_fraction": 0.9}}
    response = client.post("/api/v1/rollouts", json=body, headers=auth(token))
    assert response.status_code == 201, response.text
    return dict(response.json())


def _status(client: TestClient, token: str, rollout_id: int) -> dict[str, Any]:
    return dict(client.get(f"/api/v1/rollouts/{rollout_id}", headers=auth(token)).json())


def _assigned(client: TestClient, fleet: list[EnrolledDevice], old: str, version: str) -> list[EnrolledDevice]:
    return [d for d in fleet if beat(client, d, old, "IDLE")["bundle_version"] == version]


def test_a_good_bundle_goes_out_wave_by_wave(repo: Repo, versions: tuple[str, str], client: TestClient,
                                             operator_token: str, admin_token: str) -> None:
    old, new = versions
    fleet = _fleet(client, operator_token, "good-wave", 4)
    for device in fleet:
        beat(client, device, old, "COMMITTED")
    rollout = _create(client, operator_token, new, "good-wave")
    assert [w["devices"] for w in rollout["waves"]] == [1, 1, 2]
    now = datetime.now(UTC)
    for wave, expected in enumerate([1, 2, 4]):
        controller.tick(repo.backends, now)  # assigns the wave
        updated = [d for d in fleet if beat(client, d, old, "IDLE")["bundle_version"] == new]
        assert len(updated) == expected
        for device in updated:
            desired = beat(client, device, new, "PROBATION", latency_ms_p95=44.0)
            assert desired == {"bundle_version": new, "model": "digits", "target": f"digits/{new}/bundle.tar"}
        controller.tick(repo.backends, now + timedelta(seconds=1))  # switched; soaking
        assert _status(client, operator_token, rollout["id"])["current_wave"] == wave
        now += timedelta(seconds=20)
        controller.tick(repo.backends, now)  # soaked: gates pass
    status = _status(client, operator_token, rollout["id"])
    assert status["state"] == "completed"
    events = client.get(f"/api/v1/rollouts/{rollout['id']}/events", headers=auth(operator_token)).json()["items"]
    assert [e["decision"] for e in events].count("wave_passed") == 3 and events[-1]["decision"] == "completed"


def test_a_bad_bundle_is_stopped_in_wave_one_and_rolled_back(repo: Repo, versions: tuple[str, str],
                                                             client: TestClient, operator_token: str) -> None:
    old, new = versions
    fleet = _fleet(client, operator_token, "bad-wave", 5)
    for device in fleet:
        beat(client, device, old, "COMMITTED")
    rollout = _create(client, operator_token, new, "bad-wave")
    now = datetime.now(UTC)
    controller.tick(repo.backends, now)
    canaries = _assigned(client, fleet, old, new)
    assert len(canaries) == 1
    beat(client, canaries[0], new, "PROBATION", drift_alarm_rate=80.0)
    controller.tick(repo.backends, now + timedelta(seconds=1))
    controller.tick(repo.backends, now + timedelta(seconds=30))
    status = _status(client, operator_token, rollout["id"])
    assert status["state"] == "paused" and status["rolled_back"] and status["current_wave"] == 0
    assert beat(client, canaries[0], new, "PROBATION") == {"bundle_version": old, "model": "digits",
                                                            "target": f"digits/{old}/bundle.tar"}
    untouched = [d for d in fleet if d is not canaries[0]]
    assert all(beat(client, d, old, "COMMITTED")["bundle_version"] is None for d in untouched)
    events = client.get(f"/api/v1/rollouts/{rollout['id']}/events", headers=auth(operator_token)).json()["items"]
    assert events[-1]["decision"] == "rolled_back" and "drift_alarm_rate 80.0 > max_drift_alarm_rate 5.0" in \
        events[-1]["reason"]
    aborted = client.post(f"/api/v1/rollouts/{rollout['id']}/abort", headers=auth(operator_token)).json()
    assert aborted["state"] == "aborted"


def test_a_device_rolling_back_itself_fails_the_gate_early(repo: Repo, versions: tuple[str, str],
                                                           client: TestClient, operator_token: str) -> None:
    old, new = versions
    fleet = _fleet(client, operator_token, "self-rollback", 3)
    rollout = _create(client, operator_token, new, "self-rollback")
    now = datetime.now(UTC)
    controller.tick(repo.backends, now)
    canary = _assigned(client, fleet, old, new)[0]
    beat(client, canary, old, "DOWNLOADING")
    controller.tick(repo.backends, now)
    beat(client, canary, old, "ROLLED_BACK")
    controller.tick(repo.backends, now)  # no soak needed: 1 of 1 failed
    assert _status(client, operator_token, rollout["id"])["state"] == "paused"


def test_pause_resume_and_conflicts(repo: Repo, versions: tuple[str, str], client: TestClient,
                                    operator_token: str, viewer_token: str) -> None:
    old, new = versions
    _fleet(client, operator_token, "pausable", 2)
    rollout = _create(client, operator_token, new, "pausable")
    again = client.post("/api/v1/rollouts", json={"model": "digits", "bundle_version": new,
                                                  "selector": {"tags": ["pausable"]},
                                                  "waves": [{"fraction": 1.0, "soak_s": 0}]},
                        headers=auth(operator_token))
    assert again.status_code == 409
    path = f"/api/v1/rollouts/{rollout['id']}"
    assert client.post(f"{path}/pause", headers=auth(viewer_token)).status_code == 403
    assert client.post(f"{path}/pause", headers=auth(operator_token)).json()["state"] == "paused"
    assert controller.tick(repo.backends) == 0 or _status(client, operator_token, rollout["id"])["state"] == "paused"
    assert client.post(f"{path}/pause", headers=auth(operator_token)).status_code == 409
    assert client.post(f"{path}/resume", headers=auth(operator_token)).json()["state"] == "running"
    devices = client.get(f"{path}/devices", headers=auth(operator_token)).json()["items"]
    assert len(devices) == 2 and {d["state"] for d in devices} == {"waiting"}
    assert client.post(f"{path}/abort", headers=auth(operator_token)).json()["state"] == "aborted"
    bad = client.post("/api/v1/rollouts", json={"model": "digits", "bundle_version": "9.9.9",
                                                "selector": {"fleet": True}, "waves": [{"count": 1, "soak_s": 0}]},
                      headers=auth(operator_token))
    assert bad.status_code == 404


def test_the_worker_steps_rollouts_and_keeps_metadata_fresh(repo: Repo, versions: tuple[str, str],
                                                            client: TestClient, operator_token: str) -> None:
    from sqlalchemy import func, select

    from server.db.models import TufMetadata
    from server.worker.runner import Worker

    old, new = versions
    fleet = _fleet(client, operator_token, "worker-tick", 2)
    rollout = _create(client, operator_token, new, "worker-tick")
    # With a far longer lifetime configured, the current timestamp is past half of it: re-signed once.
    short = repo.backends.settings.model_copy(update={"tuf_timestamp_expiry_s": 10**9})
    worker = Worker(repo.backends)
    worker.settings = short
    with repo.backends.sessions() as session:
        before = session.scalar(select(func.max(TufMetadata.version)).where(TufMetadata.role == "timestamp"))
    worker.maintain()
    worker.maintain()  # within rollout_tick_s: does nothing
    assert len(_assigned(client, fleet, old, new)) == 1
    assert _status(client, operator_token, rollout["id"])["waves"][0]["by_state"] == {"assigned": 1}
    with repo.backends.sessions() as session:
        after = session.scalar(select(func.max(TufMetadata.version)).where(TufMetadata.role == "timestamp"))
    assert before is not None and after == before + 1


def test_a_rollout_locked_by_another_worker_is_skipped(repo: Repo, versions: tuple[str, str],
                                                       client: TestClient, operator_token: str) -> None:
    from sqlalchemy import select

    from server.db.models import Rollout

    old, new = versions
    fleet = _fleet(client, operator_token, "two-workers", 2)
    rollout = _create(client, operator_token, new, "two-workers")
    with repo.backends.sessions() as other:  # another worker is deciding for this rollout
        other.scalars(select(Rollout).where(Rollout.id == rollout["id"]).with_for_update()).one()
        controller.tick(repo.backends)
        assert _assigned(client, fleet, old, new) == []
    controller.tick(repo.backends)
    assert len(_assigned(client, fleet, old, new)) == 1


def test_update_state_and_version_may_come_inside_health(client: TestClient, operator_token: str,
                                                         viewer_token: str) -> None:
    device = enroll(client, operator_token)
    body = {"health": {"update_state": "PROBATION", "model_version": "3.1.0", **GOOD_HEALTH}}
    assert client.post(f"/api/v1/devices/{device.device_id}/heartbeat", json=body,
                       headers=device.headers).status_code == 200
    detail = client.get(f"/api/v1/devices/{device.device_id}", headers=auth(viewer_token)).json()
    assert (detail["update_state"], detail["model_version"]) == ("PROBATION", "3.1.0")
    assert detail["health"]["drift_alarm_rate"] == 1.0
