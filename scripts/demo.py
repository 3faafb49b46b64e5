"""The whole loop on one machine, narrated: `scripts/demo` runs this.

1. A server on the embedded default (its own PostgreSQL, local object store, MLflow tables) holding
   the online TUF keys; the root and targets keys stay offline in demo-data/keys.
2. A simulated fleet (real device processes: inference + updater) on the factory model, digits 0-5.
3. The world changes: the cameras start showing digits 6-9. The label-free detectors raise drift.
4. The v2 model (all ten digits) is registered in MLflow, published from its alias as a signed bundle,
   and rolled out in three health-gated waves. The drift subsides.
5. A broken bundle (valid and signed, but every detector alarms) is stopped in its first wave and
   rolled back without anyone stepping in.
The dashboard stays up at the end (Ctrl-C stops everything).

Environment: DEMO_DIR (default demo-data), DEMO_DEVICES (5), DEMO_PORT (8000, or a free one),
DEMO_KEEP_SERVER (1 on a terminal: keep the dashboard up until Ctrl-C).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
import warnings
from pathlib import Path
from typing import Any

from simulator import FleetSpec
from simulator.bundles import drifting_bundle
from simulator.fleet import Simulation, Summary
from simulator.server import OperatorAPI

ROOT = Path(__file__).resolve().parent.parent
FACTORY = ROOT / "device" / "models" / "digits"
DIGITS_V2 = ROOT / "benchmarks" / "fixtures" / "digits-v2"
GATES = {"max_drift_alarm_rate": 60, "max_error_rate": 0.05, "max_p95_latency_ratio": 4.0,
         "min_healthy_fraction": 0.8}
DRIFT_AT = 150  # frames of the known world before the unseen digits (30 s at 5 fps)


def say(text: str) -> None:
    sys.stderr.write(text + "\n")
    sys.stderr.flush()


def act(title: str) -> None:
    say(f"\n==> {title}")


def free_port(preferred: int) -> int:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", preferred))
        except OSError:
            sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Demo:
    def __init__(self, workdir: Path, devices: int, port: int) -> None:
        self.workdir, self.devices = workdir, devices
        self.data = workdir / "server"
        self.keys = workdir / "keys"
        self.url = f"http://127.0.0.1:{port}"
        self.port = port
        self.server: subprocess.Popen[bytes] | None = None
        self.operator = ""

    # -- the server side, as an operator types it -------------------------------------------------
    def tinysphere(self, *argv: str, data_dir: bool = False) -> str:
        cmd = [sys.executable, "-m", "server.cli", *(["--data-dir", str(self.data)] if data_dir else []), *argv]
        done = subprocess.run(cmd, cwd=self.workdir, capture_output=True, text=True, timeout=300,
                              env=self.env())
        if done.returncode != 0:
            raise SystemExit(f"tinysphere {' '.join(argv[:2])} failed:\n{done.stdout}{done.stderr}")
        return done.stdout.strip()

    def env(self) -> dict[str, str]:
        keep = {k: v for k, v in os.environ.items() if not k.startswith(("TINYSPHERE_", "MLFLOW_"))}
        return {**keep, "TINYSPHERE_TUF_SNAPSHOT_KEY_FILE": str(self.keys / "snapshot.key"),
                "TINYSPHERE_TUF_TIMESTAMP_KEY_FILE": str(self.keys / "timestamp.key"),
                "TINYSPHERE_ROLLOUT_TICK_S": "1", "TINYSPHERE_WORKER_POLL_S": "0.5"}

    def start_server(self) -> None:
        act(f"server: tinysphere serve --worker on {self.url} (embedded PostgreSQL, objects and MLflow "
            f"under {self.data})")
        self.tinysphere("keys", "init", "--out", str(self.keys))
        log = (self.workdir / "server.log").open("ab")
        self.server = subprocess.Popen(
            [sys.executable, "-m", "server.cli", "serve", "--data-dir", str(self.data), "--port", str(self.port),
             "--worker", "--no-access-log"], cwd=self.workdir, stdout=log, stderr=subprocess.STDOUT,
            env=self.env(), start_new_session=True)
        deadline = time.monotonic() + 120
        while True:
            try:
                with urllib.request.urlopen(f"{self.url}/healthz", timeout=2):  # noqa: S310 - loopback
                    break
            except OSError:
                if self.server.poll() is not None or time.monotonic() > deadline:
                    raise SystemExit(f"the server did not start; see {self.workdir / 'server.log'}") from None
                time.sleep(0.5)
        admin = self.tinysphere("tokens", "create", "--role", "admin", "--name", "demo-admin", data_dir=True)
        self.operator = self.tinysphere("tokens", "create", "--role", "operator", "--name", "demo", data_dir=True)
        self.tinysphere("keys", "push-root", "--dir", str(self.keys), "--server", self.url, "--token", admin)
        say(f"    offline keys (root, targets) in {self.keys}; the server holds only snapshot and timestamp")
        self.publish_tar(FACTORY)
        say("    published the factory bundle digits 1.0.0 (signed offline with targets.key)")

    def api(self, method: str, path: str, body: Any = None) -> Any:
        return OperatorAPI(self.url, self.operator).json(method, f"/api/v1{path}", body)

    def publish_tar(self, bundle: Path) -> None:
        tar = self.workdir / f"{bundle.name}.tar"
        self.tinysphere("bundle", "build", str(bundle), "--out", str(tar))
        self.tinysphere("bundle", "publish", str(tar), "--key", str(self.keys / "targets.key"),
                        "--server", self.url, "--token", self.operator)

    def publish_from_mlflow(self, bundle: Path) -> None:
        """Register the bundle as MLflow model `digits` (pyfunc: it predicts as a device does), alias `champion`,
        with `tinylcm bundle register`'s function, and publish that version."""
        from device.mlflow_model import register_bundle
        from server import embedded

        engines = embedded.start(self.data)
        registered = register_bundle(bundle, engines.mlflow_tracking_uri, "digits", alias="champion",
                                     experiment="digits-training", artifact_location=engines.mlflow_artifact_root)
        say(f"    MLflow: run {registered.run_id[:8]} registered as models:/digits version {registered.version}, "
            "alias champion")
        self.tinysphere("bundle", "publish", "--from-mlflow", "models:/digits@champion", "--mlflow-uri",
                        engines.mlflow_tracking_uri, "--key", str(self.keys / "targets.key"), "--server", self.url,
                        "--token", self.operator)
        say("    published digits 2.0.0 from models:/digits@champion (lineage recorded both ways)")

    # -- rollouts ---------------------------------------------------------------------------------
    def rollout(self, version: str, ids: list[str], soak_s: float) -> dict[str, Any]:
        return dict(self.api("POST", "/rollouts", {
            "model": "digits", "bundle_version": version, "selector": {"device_ids": ids},
            "waves": [{"count": 1, "soak_s": soak_s}, {"fraction": 0.5, "soak_s": soak_s},
                      {"fraction": 1.0, "soak_s": soak_s}],
            "gates": GATES, "wave_timeout_s": 300}))

    def follow(self, sim: Simulation, rollout_id: int, timeout_s: float) -> dict[str, Any]:
        seen: set[int] = set()
        status: dict[str, Any] = {}

        def done(_: Summary) -> bool:
            nonlocal status
            status = self.api("GET", f"/rollouts/{rollout_id}")
            for event in self.api("GET", f"/rollouts/{rollout_id}/events?limit=500")["items"]:
                if event["id"] not in seen:
                    seen.add(event["id"])
                    wave = "" if event.get("wave") is None else f" wave {event['wave']}"
                    say(f"    rollout {rollout_id}{wave}: {event['decision']} - {event['reason']}")
            return status["state"] in ("completed", "paused", "aborted")

        sim.watch(timeout_s, until=done)
        return status


def alarm_rates(sim: Simulation) -> dict[str, float]:
    """Drift alarms per 1000 frames over each device's recent window (reset when its model changes)."""
    from simulator.processes import ProcessDevice

    assert sim.fleet is not None
    rates = {}
    for device in getattr(sim.fleet, "devices", []):
        assert isinstance(device, ProcessDevice)
        health = device.health()
        rates[device.setup.name] = float(health.get("drift_alarm_rate") or 0.0)
    return rates


def mean(values: Any) -> float:
    values = list(values)
    return round(sum(values) / len(values), 1) if values else 0.0


def main() -> int:
    warnings.filterwarnings("ignore", message=".*XDG_RUNTIME_DIR")  # platformdirs, imported by MLflow
    workdir = Path(os.environ.get("DEMO_DIR", ROOT / "demo-data")).resolve()
    devices = int(os.environ.get("DEMO_DEVICES", "5"))
    keep = os.environ.get("DEMO_KEEP_SERVER", "1" if sys.stdin.isatty() else "0") == "1"
    if workdir.exists():
        shutil.rmtree(workdir)
    workdir.mkdir(parents=True)
    demo = Demo(workdir, devices, free_port(int(os.environ.get("DEMO_PORT", "8000"))))
    sim: Simulation | None = None
    try:
        demo.start_server()
        say(f"\n    dashboard: {demo.url}/ui/  (sign in with this operator token)\n    {demo.operator}")

        act(f"fleet: {devices} devices (tinylcm run + tinylcm updater each) enrolled on the factory model, "
            f"digits 0-5; from frame {DRIFT_AT} their cameras see digits 6-9 too")
        spec = FleetSpec(devices=devices, duration_s=3600, mode="processes", fps=5, drift=f"unseen@{DRIFT_AT}",
                         heartbeat_s=1, sync_s=3, probation_s=10, name="demo")
        sim = Simulation(spec, demo.url, demo.operator, workdir / "fleet", say=say, every_s=5)
        sim.start()
        sim.watch(180, until=lambda s: s.drift_events >= devices and s.frames >= devices * (DRIFT_AT + 60))
        before = alarm_rates(sim)
        say(f"    drift: every device raised alarms without a single label; mean alarm rate {mean(before.values())}"
            " per 1000 frames")

        act("v2 (digits 0-9) registered in MLflow, published from its alias, rolled out in three waves")
        demo.publish_from_mlflow(DIGITS_V2)
        ids = [d["id"] for d in demo.api("GET", f"/devices?tag={sim.tag}&limit=500")["items"]]
        good = demo.rollout("2.0.0", ids, soak_s=10)
        status = demo.follow(sim, good["id"], 300)
        say(f"    rollout {good['id']}: {status['state']}")
        sim.watch(60, until=lambda s: s.models.get("2.0.0") == devices)
        sim.watch(25)  # let the new model fill its window of frames
        after = alarm_rates(sim)
        say(f"    drift-alarm rate per 1000 frames: {mean(before.values())} on 1.0.0 -> {mean(after.values())} on "
            "2.0.0: the drift subsides")

        act("a broken bundle 2.0.1 (valid, signed, loads, classifies; every detector alarms) is rolled out")
        with tempfile.TemporaryDirectory() as tmp:
            demo.publish_tar(drifting_bundle(DIGITS_V2, Path(tmp), "2.0.1"))
        bad = demo.rollout("2.0.1", ids, soak_s=30)
        status = demo.follow(sim, bad["id"], 240)
        sim.watch(60, until=lambda s: s.models.get("2.0.0") == devices)
        per_device = demo.api("GET", f"/rollouts/{bad['id']}/devices?limit=500")["items"]
        touched = [d for d in per_device if d.get("wave") == 0]
        say(f"    rollout {bad['id']}: {status['state']}, rolled back: {status.get('rolled_back')}; "
            f"{len(touched)} of {devices} devices (the canary) ever saw 2.0.1, and every device runs 2.0.0 again")
        result = sim.stop(drain_s=0)
        sim = None
        say(f"\n==> done: {json.dumps({k: result[k] for k in ('devices', 'frames', 'drift_events', 'models')})}")
        if keep:
            say(f"    the dashboard stays up at {demo.url}/ui/ (token above); Ctrl-C to stop")
            signal.sigwait({signal.SIGINT, signal.SIGTERM})
        return 0
    finally:
        if sim is not None:
            sim.stop(drain_s=0)
        if demo.server is not None and demo.server.poll() is None:
            os.killpg(demo.server.pid, signal.SIGTERM)
            demo.server.wait(60)


if __name__ == "__main__":
    sys.exit(main())
