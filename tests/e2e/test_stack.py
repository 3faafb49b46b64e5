"""compose.server.yml's topology as processes: two API replicas behind a round-robin proxy, two workers, MLflow
on PostgreSQL and S3, carrying a fleet of agents, a bundle published from an MLflow alias and rolled out, and
a bad bundle rolled back.

Asserts what replicas must agree on: every record on the server once (or still in its outbox, or counted as
lost), every import job completed once, every rollout decision and every snapshot/timestamp signing made by
one replica (from the replicas' logs, matched against the database), and no 5xx through the proxy. The
figures (records/s, wall times, how the work split over the replicas) are printed as one JSON line.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from simulator.bundles import drifting_bundle
from tests.e2e.fleet import DIGITS_V2, FACTORY, GATES
from tests.e2e.server_proc import ROOT
from tests.e2e.stack import DECISION, IMPORTED, MLFLOW_USER, SIGNED, Stack, running_stack
from tests.e2e.test_simulator import check_nothing_lost_or_doubled
from tests.utils.wait import wait_until

AGENTS = int(os.environ.get("TINYMLOPS_STACK_AGENTS", "100"))
ROLLOUT = 10  # the agents the good bundle goes to (a canary, 5, 10)
# The e2e gates without latency: agents share one process and one frame thread on a loaded machine, so their
# latency says more about the machine than about the bundle (test_rollout.py gates it, with device processes).
STACK_GATES = {gate: limit for gate, limit in GATES.items() if gate != "max_p95_latency_ratio"}
FAILED_IMPORT = re.compile(r"package (\S+) of (\S+) failed \(attempt \d+\)")  # server/worker/runner.py


def api(stack: Stack, method: str, path: str, body: Any = None) -> Any:
    """The operator's call through the proxy."""
    request = urllib.request.Request(  # noqa: S310 - loopback
        f"{stack.api.url}/api/v1{path}", method=method, data=None if body is None else json.dumps(body).encode(),
        headers={"Authorization": f"Bearer {stack.operator_token}", "Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=60) as response:  # noqa: S310
        return json.loads(response.read() or b"null")


def publish_tar(stack: Stack, bundle: Path) -> None:
    tar = stack.keys.parent / f"{bundle.name}.tar"
    stack.operator("bundle", "build", str(bundle), "--out", str(tar))
    stack.operator("bundle", "publish", str(tar), "--key", str(stack.keys / "targets.key"), "--server", stack.api.url,
                   "--token", stack.operator_token)


def publish_from_mlflow(stack: Stack, bundle: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """As scripts/demo.py: log the bundle as a run's artifacts, register it as `digits`, alias `champion`, and
    publish that alias; MLflow reached through the proxy with basic auth, as an operator reaches it."""
    from mlflow.tracking import MlflowClient

    auth = {"MLFLOW_TRACKING_USERNAME": MLFLOW_USER, "MLFLOW_TRACKING_PASSWORD": stack.mlflow_password}
    for key, value in auth.items():
        monkeypatch.setenv(key, value)
    client = MlflowClient(stack.mlflow.url)
    run = client.create_run(client.create_experiment("digits-training"))
    client.log_artifacts(run.info.run_id, str(bundle), "bundle")
    client.set_terminated(run.info.run_id)
    client.create_registered_model("digits")
    version = client.create_model_version("digits", f"{run.info.artifact_uri}/bundle", run_id=run.info.run_id)
    client.set_registered_model_alias("digits", "champion", version.version)
    return stack.operator("bundle", "publish", "--from-mlflow", "models:/digits@champion", "--mlflow-uri",
                          stack.mlflow.url, "--key", str(stack.keys / "targets.key"), "--server", stack.api.url,
                          "--token", stack.operator_token, env=auth)


def rollout(stack: Stack, version: str, ids: list[str], soak_s: float) -> int:
    """Three waves (a canary, half, all) of `version` to `ids` under the e2e gates."""
    created = api(stack, "POST", "/rollouts", {
        "model": "digits", "bundle_version": version, "selector": {"device_ids": ids},
        "waves": [{"count": 1, "soak_s": soak_s}, {"fraction": 0.5, "soak_s": soak_s},
                  {"fraction": 1.0, "soak_s": soak_s}],
        "gates": STACK_GATES, "wave_timeout_s": 240})
    return int(created["id"])


def follow(stack: Stack, rollout_id: int, fleet: subprocess.Popen[str], timeout_s: float) -> tuple[dict[str, Any],
                                                                                                      list[int]]:
    """Poll the rollout until it stops running; its final status and the waves seen on the way."""
    seen: list[int] = []

    def done() -> dict[str, Any] | None:
        assert fleet.poll() is None, "the fleet exited"
        status = api(stack, "GET", f"/rollouts/{rollout_id}")
        if not seen or seen[-1] != status["current_wave"]:
            seen.append(status["current_wave"])
        return status if status["state"] != "running" else None

    return wait_until(done, timeout_s, f"rollout {rollout_id} to finish", interval=1), seen


def decisions_of(stack: Stack, rollout_id: int) -> list[dict[str, Any]]:
    return stack.db.rows("SELECT wave, decision, reason FROM rollout_events WHERE rollout_id = :r ORDER BY id",
                         r=rollout_id)


def versions(stack: Stack) -> Counter[str]:
    return Counter(r["model_version"] for r in stack.db.rows("SELECT model_version FROM devices"))


def updaters(fleet_dir: Path) -> dict[str, dict[str, Any]]:
    """Each agent's updater record, by device id."""
    found = {}
    for state in fleet_dir.glob("sim-*/data/state"):
        identity = json.loads((state / "sync_identity.json").read_text())
        found[identity["device_id"]] = json.loads((state / "updater.json").read_text())
    return found


def start_fleet(stack: Stack, workdir: Path, stop: Path) -> subprocess.Popen[str]:
    """The agents through the proxy. 100 agents share one process and one frame thread beside the whole stack
    (0.5-1 frame/s each on a loaded machine): a long probation window, as the updater wants 50 frames of a new
    model before it commits, and a latency floor of 400 ms rather than 50 ms."""
    argv = [sys.executable, "-m", "tests.e2e.stack_fleet", "--server", stack.api.url, "--workdir", str(workdir),
            "--devices", str(AGENTS), "--mode", "agents", "--duration", "900", "--fps", "1", "--heartbeat", "2",
            "--sync-interval", "60", "--probation", "60", "--latency-floor-ms", "400", "--every", "10",
            "--stop-file", str(stop)]
    with (workdir.parent / "fleet.log").open("w") as log:  # the live lines, for a failure
        return subprocess.Popen(argv, cwd=ROOT, stdout=subprocess.PIPE, stderr=log, text=True,
                                env={**os.environ, "TINYSPHERE_TOKEN": stack.operator_token})


@pytest.mark.slow
def test_the_compose_stack_carries_a_fleet_through_a_rollout_and_a_rollback(
        e2e_env: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    began = time.monotonic()
    times: dict[str, float] = {}

    def lap(name: str, since: float) -> float:
        times[name] = round(time.monotonic() - since, 1)
        return time.monotonic()

    with running_stack(e2e_env, tmp_path / "stack") as stack:
        mark = lap("stack_up_s", began)
        with pytest.raises(urllib.error.HTTPError) as refused:  # MLflow behind the proxy needs its password
            urllib.request.urlopen(f"{stack.mlflow.url}/api/2.0/mlflow/experiments/search", timeout=10)  # noqa: S310
        assert refused.value.code == 401
        publish_tar(stack, FACTORY)

        fleet_dir, stop = tmp_path / "fleet", tmp_path / "stop"
        fleet_dir.mkdir()
        fleet = start_fleet(stack, fleet_dir, stop)
        fleet_started = time.monotonic()
        try:
            wait_until(lambda: versions(stack)["1.0.0"] == AGENTS, 240, f"{AGENTS} agents on 1.0.0", interval=0.5)
            mark = lap("fleet_up_s", mark)
            ids = [r["id"] for r in stack.db.rows("SELECT id FROM devices ORDER BY name")]
            # The good bundle goes to ROLLOUT agents, the bad one to the others: each agent's updater takes
            # seconds of a small shared pool, and a device in probation finishes it before the next bundle.
            chosen, others = ids[:ROLLOUT], ids[ROLLOUT:]

            published = publish_from_mlflow(stack, DIGITS_V2, monkeypatch)
            assert "2.0.0" in published, published
            good = rollout(stack, "2.0.0", chosen, soak_s=3)
            status, waves = follow(stack, good, fleet, 300)
            assert status["state"] == "completed" and not status["rolled_back"], (
                status, decisions_of(stack, good))
            assert waves == sorted(waves) and waves[-1] == 2, waves
            expected = Counter({"2.0.0": ROLLOUT, "1.0.0": AGENTS - ROLLOUT})
            wait_until(lambda: versions(stack) == expected, 120, f"{ROLLOUT} agents on 2.0.0", interval=0.5)
            mark = lap("good_rollout_s", mark)

            publish_tar(stack, drifting_bundle(DIGITS_V2, tmp_path, "2.0.1"))
            bad = rollout(stack, "2.0.1", others, soak_s=15)
            status, waves = follow(stack, bad, fleet, 240)
            assert status["state"] == "paused" and status["rolled_back"] and waves == [0], (
                status, waves, decisions_of(stack, bad))
            touched = stack.db.rows("SELECT device_id, wave, state FROM rollout_devices WHERE rollout_id = :r "
                                    "AND state <> 'waiting'", r=bad)
            assert len(touched) == 1 and touched[0]["wave"] == 0, touched  # the canary alone saw 2.0.1
            wait_until(lambda: versions(stack) == expected, 120, "the canary back on 1.0.0", interval=0.5)
            mark = lap("bad_rollout_s", mark)
            wait_until(lambda: all(updaters(fleet_dir)[i]["state"] == "COMMITTED" for i in chosen), 240,
                       "the good bundle's probation to end in a commit", interval=0.5)
            lap("commits_s", mark)
        finally:
            stop.touch()
            out, _ = fleet.communicate(timeout=300)
        times["fleet_run_s"] = round(time.monotonic() - fleet_started, 1)
        result = json.loads(out.strip().splitlines()[-1])
        assert result["alive"] == AGENTS and result["drained"] is True, result
        assert result["models"] == dict(expected), result
        assert all(updaters(fleet_dir)[i]["live_version"] == "2.0.0" for i in chosen)

        # -- every record once, every import job once ---------------------------------------------
        check_nothing_lost_or_doubled(stack, fleet_dir, AGENTS)  # type: ignore[arg-type]  # it reads only .db
        jobs = stack.db.rows(
            "SELECT p.device_id, p.id, p.status, count(j.id) AS jobs, min(j.state) AS state, "
            "max(j.attempts) AS attempts FROM packages p LEFT JOIN jobs j "
            "ON j.device_id = p.device_id AND j.package_id = p.id GROUP BY p.device_id, p.id, p.status")
        assert jobs and all(j["status"] == "imported" and j["jobs"] == 1 and j["state"] == "done" for j in jobs), [
            j for j in jobs if j["status"] != "imported" or j["jobs"] != 1 or j["state"] != "done"][:5]
        imported = stack.who(IMPORTED)  # (package, device) -> the workers that logged its completion
        assert set(imported) == {(j["id"], j["device_id"]) for j in jobs}
        assert all(len(names) == 1 for names in imported.values()), {k: n for k, n in imported.items() if len(n) > 1}
        failed = stack.who(FAILED_IMPORT)  # each failed attempt is logged, then retried
        assert all(j["attempts"] == 1 + len(failed.get((j["id"], j["device_id"]), [])) for j in jobs), [
            j for j in jobs if j["attempts"] != 1 + len(failed.get((j["id"], j["device_id"]), []))][:5]

        # -- each decision by one replica --------------------------------------------------------------
        decisions = stack.who(DECISION)  # (rollout, wave, decision) -> the replicas that logged it
        assert all(len(names) == 1 for names in decisions.values()), {k: n for k, n in decisions.items() if len(n) > 1}
        events = stack.db.rows("SELECT rollout_id, wave, decision FROM rollout_events")
        assert sorted(decisions) == sorted((str(e["rollout_id"]), str(e["wave"]), e["decision"]) for e in events)
        signings = stack.who(SIGNED)  # (role, version) -> the replicas that signed it
        assert all(len(names) == 1 for names in signings.values()), {k: n for k, n in signings.items() if len(n) > 1}
        stored = stack.db.rows("SELECT role, version FROM tuf_metadata WHERE role IN ('snapshot', 'timestamp')")
        assert sorted(signings) == sorted((v["role"], str(v["version"])) for v in stored)

        # -- no 5xx through the proxy --------------------------------------------------------------
        assert not stack.api.errors and not stack.mlflow.errors, (stack.api.errors[:5], stack.mlflow.errors[:5])
        split = stack.api.split()
        assert all(split.values()), split  # round robin reached every replica

        records = stack.db.rows("SELECT count(*) AS n FROM records")[0]["n"]
        span = stack.db.rows("SELECT extract(epoch FROM max(imported_at) - min(received_at)) AS s FROM packages")[0]
        figures = {
            "agents": AGENTS, "times_s": {**times, "total": round(time.monotonic() - began, 1)},
            "replicas_healthy_after_s": stack.started_s, "fleet": {k: result[k] for k in (
                "frames", "boot_s", "drain_s", "frame_lag_s")},
            "records": records, "records_per_s": round(records / float(span["s"]), 1),
            "packages": len(jobs), "records_per_package": round(records / len(jobs), 1),
            "requests_per_api_replica": split, "statuses": stack.api.statuses(),
            "imports_per_worker": stack.split(IMPORTED), "decisions_per_replica": stack.split(DECISION),
            "signings_per_replica": stack.split(SIGNED), "admin_tokens_printed": len(stack.admin_tokens),
        }
        print("\nstack figures: " + json.dumps(figures))
