"""A signed bundle reaches a fleet of real devices wave by wave; a bad one is stopped in its first wave.

The server is `tinysphere serve --worker` holding the online TUF keys (root and targets stay offline in a
temporary key directory); every device is `tinylcm run` + `tinylcm updater` on one data dir, enrolled
with a token, pinned to root v1, starting on the factory bundle 1.0.0.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from simulator.processes import stop_all
from tests.e2e.fleet import (
    DIGITS_V2,
    FACTORY,
    FleetDevice,
    RegistryServer,
    alarming_bundle,
    start_rollout,
)
from tests.utils.wait import wait_until

DEVICES = int(os.environ.get("TINYMLOPS_E2E_FLEET", "20"))  # fewer on a small machine


@pytest.fixture
def fleet(registry: RegistryServer, tmp_path: Path) -> Iterator[list[FleetDevice]]:
    devices = [FleetDevice(tmp_path / f"device{i:02d}", registry, seed=i) for i in range(DEVICES)]
    try:
        for device in devices:
            device.start()
        yield devices
    finally:
        stop_all(devices)


def _ids(fleet: list[FleetDevice]) -> list[str]:
    def enrolled() -> list[str] | None:
        for device in fleet:
            assert device.alive(), device.log_tail()
        ids = [device.device_id for device in fleet]
        return None if None in ids else [str(i) for i in ids]

    return wait_until(enrolled, 180, "every device to enroll", interval=0.5)


def _versions(registry: RegistryServer, ids: list[str]) -> dict[str, Any]:
    return {i: row["model_version"] for i, row in registry.devices(ids).items()}



def _follow(registry: RegistryServer, rollout_id: int, until: set[str], timeout_s: float,
            fleet: list[FleetDevice]) -> tuple[dict[str, Any], list[int]]:
    """Poll the rollout until its state is in `until`; the final status and every wave index seen."""
    seen: list[int] = []

    def done() -> dict[str, Any] | None:
        for device in fleet:
            assert device.alive(), device.log_tail()
        status = registry.api("GET", f"/rollouts/{rollout_id}")
        if not seen or seen[-1] != status["current_wave"]:
            seen.append(status["current_wave"])
        return status if status["state"] in until else None

    return wait_until(done, timeout_s, f"rollout {rollout_id} to reach {until}", interval=0.5), seen


def _committed(fleet: list[FleetDevice], version: str) -> bool:
    for device in fleet:
        history = device.updater_history()
        if not history or history[-1].get("to") != "COMMITTED" or history[-1].get("version") != version:
            return False
    return True


def test_good_bundle_reaches_the_fleet_and_a_bad_one_is_stopped_in_wave_one(
        registry: RegistryServer, fleet: list[FleetDevice], tmp_path: Path) -> None:
    started = time.monotonic()
    ids = _ids(fleet)
    wait_until(lambda: set(_versions(registry, ids).values()) == {"1.0.0"}, 120, "heartbeats on the factory model",
               interval=0.5)
    registry.publish(FACTORY)
    registry.publish(DIGITS_V2)

    # -- the good bundle: three waves, the whole fleet ------------------------------------------
    good = start_rollout(registry, "2.0.0", ids, soak_s=3, wave_timeout_s=120)
    status, waves = _follow(registry, good["id"], {"completed", "paused", "aborted"}, 300, fleet)
    events = registry.api("GET", f"/rollouts/{good['id']}/events?limit=500")["items"]
    assert status["state"] == "completed", (status, events)
    assert not status["rolled_back"]
    assert waves == sorted(waves) and waves[-1] == 2 and len(set(waves)) >= 2, waves
    assert [w["devices"] for w in status["waves"]][0] == 1
    assert sum(w["devices"] for w in status["waves"]) == DEVICES
    wait_until(lambda: set(_versions(registry, ids).values()) == {"2.0.0"}, 120, "every device to report 2.0.0",
               interval=0.5)
    wait_until(lambda: _committed(fleet, "2.0.0"), 120, "every updater to commit 2.0.0", interval=0.5)
    good_s = time.monotonic() - started

    # -- a bad bundle: loads and classifies, but every detector alarms ---------------------------
    registry.publish(alarming_bundle(tmp_path))
    bad = start_rollout(registry, "2.0.1", ids, soak_s=30, wave_timeout_s=120)
    status, waves = _follow(registry, bad["id"], {"paused", "completed", "aborted"}, 180, fleet)
    events = registry.api("GET", f"/rollouts/{bad['id']}/events?limit=500")["items"]
    assert status["state"] == "paused", (status, events)
    assert status["rolled_back"] and waves == [0], (status, waves)
    per_device = {d["device_id"]: d for d in registry.api("GET", f"/rollouts/{bad['id']}/devices?limit=500")["items"]}
    canaries = {i for i, d in per_device.items() if d["wave"] == 0}
    assert len(canaries) == 1
    wait_until(lambda: set(_versions(registry, ids).values()) == {"2.0.0"}, 120, "the canary back on 2.0.0",
               interval=0.5)
    for device in fleet:
        touched = [h for h in device.updater_history() if h.get("version") == "2.0.1"]
        if device.device_id in canaries:
            assert any(h.get("to") == "DOWNLOADING" for h in touched), device.updater_history()
        else:
            assert not touched, (device.device_id, touched)  # never even started downloading it
            assert per_device[str(device.device_id)]["state"] == "waiting"
    print(f"\nrollout e2e: {DEVICES} devices, good rollout {good_s:.1f} s, total {time.monotonic() - started:.1f} s")
