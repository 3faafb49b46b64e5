"""A signed bundle through a fleet in health-gated waves, and a bad one stopped and rolled back.

`python -m benchmarks.rollout --devices 50 --json` prints:
- `publish_to_full_s`: from `tinysphere bundle publish` of a good bundle until every device reports it
  (three waves: 1 device, 50 %, 100 %; `--soak` seconds each);
- `rollback_s`: from creating the rollout of a bad bundle until every device it touched reports the
  previous version again;
- `bad_bundle_max_fraction`: the largest share of the fleet that ever ran (or downloaded) the bad bundle;
- `bytes_per_device`: update traffic (TUF metadata + bundle files) per device for the good rollout;
- `mobilenetv2`: `bytes_per_device` of a full update (digits 2.0.0 -> the MobileNetV2 fixture as 3.0.0: every
  file but the identical labels.txt) and of a kNN-only update (3.0.0 -> 3.0.1, only `knn_state.npz` changed),
  side by side, with their ratio and the tar a device without file lists would download instead.

The server is the real one (`tinysphere serve --worker` on PostgreSQL + the S3 API, online TUF keys,
root/targets keys offline in a temp dir). The devices are light in-process agents, one thread each: the
real updater (`device.updater.machine.Updater`: TUF client, resumable fetcher, A/B slots, probation) and
a heartbeat loop against the real API; the inference service is replaced by a synthetic health source
that reports the live slot's version, and a drift-alarm rate of 50/1000 frames for the bad bundle
(5 otherwise). The smoke-test subprocess is skipped. The services come from `TINYMLOPS_TEST_*`
(`scripts/services up`) or are started for the run.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import threading
import time
import urllib.request
from collections import defaultdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from contract.bundle import load_bundle
from device.updater import fetcher as fetcher_module
from device.updater.health import HealthSample
from device.updater.machine import Updater
from device.updater.settings import ProbationGates, UpdaterSettings
from device.updater.target import DeviceProfile, detect_tflite_version
from simulator.spec import DEVICE_TYPE
from tests.device.updater.fakes import knn_variant, variant
from tests.e2e.fleet import (
    DIGITS_V2,
    FACTORY,
    GATES,
    ROOT,
    RegistryServer,
    alarming_bundle,
    database,
    start_rollout,
    wait_for,
)

BAD_VERSION = "2.0.1"

_BYTES: dict[str, int] = defaultdict(int)
_LOCK = threading.Lock()


class _Counted:
    """A urllib3 response that adds every body byte read through it to its device's count."""

    def __init__(self, response: Any, key: str) -> None:
        self._response, self._key = response, key

    def __getattr__(self, name: str) -> Any:
        return getattr(self._response, name)

    def _add(self, chunk: bytes) -> bytes:
        with _LOCK:
            _BYTES[self._key] += len(chunk)
        return chunk

    def stream(self, *args: Any, **kwargs: Any) -> Any:
        for chunk in self._response.stream(*args, **kwargs):
            yield self._add(chunk)

    def read1(self, *args: Any) -> bytes:
        return self._add(self._response.read1(*args))


def _count_bytes() -> None:
    """Count the body bytes every device's TUF fetcher receives (metadata and targets), per data dir."""
    original = fetcher_module.ResumableFetcher._request

    def counted(self: Any, url: str, headers: dict[str, str] | None = None) -> Any:
        return _Counted(original(self, url, headers), str(self.partial_dir))

    fetcher_module.ResumableFetcher._request = counted  # type: ignore[method-assign]


def _write_json(path: Path, data: dict[str, Any]) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data))
    os.replace(tmp, path)


class Agent:
    """One light device: heartbeat thread + the real updater; synthetic inference health."""

    def __init__(self, workdir: Path, server: RegistryServer, token: str, stop: threading.Event) -> None:
        self.data = workdir
        (self.data / "tuf").mkdir(parents=True)
        (self.data / "state").mkdir(parents=True)
        (self.data / "tuf" / "root.json").write_bytes((server.keys / "1.root.json").read_bytes())
        self.server, self.stop = server, stop
        self.frames = 0
        self.device_id, self.secret = self._enroll(token)
        _write_json(self.data / "state" / "sync_identity.json",
                    {"device_id": self.device_id, "secret": self.secret})
        self.seen: set[str] = set()  # versions this device ever ran or started downloading
        settings = UpdaterSettings(
            data_dir=self.data, server_url=server.url, factory_bundle=FACTORY, poll_interval_s=0.5,
            probe_interval_s=0.5, retry_initial_s=0.5, retry_max_s=5,
            gates=ProbationGates(window_s=4, min_frames=20, min_gate_frames=10))
        self.updater = Updater(settings, device=DeviceProfile(DEVICE_TYPE, detect_tflite_version()),
                               smoke=lambda path: None, health=self._health)
        self.threads = [threading.Thread(target=self.updater.run, args=(stop,), daemon=True),
                        threading.Thread(target=self._beat, daemon=True)]

    def _post(self, path: str, body: dict[str, Any], bearer: str) -> dict[str, Any]:
        request = urllib.request.Request(f"{self.server.url}/api/v1{path}", method="POST",
                                         data=json.dumps(body).encode(),
                                         headers={"Authorization": f"Bearer {bearer}",
                                                  "Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=30) as response:
            return json.loads(response.read())

    def _enroll(self, token: str) -> tuple[str, str]:
        reply = self._post("/devices/enroll", {"name": self.data.name, "hardware": {"board": DEVICE_TYPE}}, token)
        return str(reply["device_id"]), str(reply["device_secret"])

    def live_version(self) -> str | None:
        current = self.data / "models" / "current"
        try:
            return load_bundle(current, verify=False).version
        except Exception:  # noqa: BLE001 - not installed yet or mid-flip
            return None

    def _health(self) -> HealthSample:
        version = self.live_version()
        self.frames += 20
        rate = 50.0 if version == BAD_VERSION else 5.0
        return HealthSample(reachable=True, status="ok", model_version=version, frames=self.frames,
                            latency_ms_p95=1.0, drift_alarm_rate=rate, last_frame_age_s=0.05)

    def _beat(self) -> None:
        while not self.stop.is_set():
            version = self.live_version()
            state = self.updater.record
            if version:
                self.seen.add(version)
            if state.version and str(state.state) != "IDLE":
                self.seen.add(state.version)
            sample = self._health()
            report = {"model_version": version, "update_state": str(state.state),
                      "health": {"latency_ms_p95": sample.latency_ms_p95, "drift_alarm_rate": sample.drift_alarm_rate,
                                 "error_rate": 0.0, "healthy": True}}
            try:
                reply = self._post(f"/devices/{self.device_id}/heartbeat", report, self.secret)
                desired = reply.get("desired") or {}
                if desired.get("target"):
                    _write_json(self.data / "state" / "desired.json",
                                {**desired, "received_at": datetime.now(UTC).isoformat(timespec="seconds")})
            except OSError as exc:
                print(f"{self.device_id}: heartbeat failed: {exc}", file=sys.stderr)
            self.stop.wait(1.0)

    def start(self) -> None:
        for thread in self.threads:
            thread.start()



MOBILENETV2 = ROOT / "benchmarks" / "fixtures" / "mobilenetv2"


def _traffic() -> int:
    with _LOCK:
        return sum(_BYTES.values())


def _roll_out(server: RegistryServer, agents: list[Agent], bundle: Path, soak_s: float) -> int:
    """Publish `bundle`, roll it out to every agent in one wave, wait for every commit; bytes per device."""
    meta = load_bundle(bundle, verify=False)
    server.publish(bundle)
    before = _traffic()
    ids = [a.device_id for a in agents]
    rollout = server.api("POST", "/rollouts", {
        "model": meta.name, "bundle_version": meta.version, "selector": {"device_ids": ids},
        "waves": [{"fraction": 1.0, "soak_s": soak_s}], "gates": GATES, "wave_timeout_s": 300})
    wait_for(lambda: server.api("GET", f"/rollouts/{rollout['id']}")["state"] != "running",
             f"the rollout of {meta.name} {meta.version}", timeout_s=600)
    wait_for(lambda: all(a.live_version() == meta.version and str(a.updater.record.state) == "COMMITTED"
                         for a in agents), f"every device on {meta.version}", timeout_s=300)
    return round((_traffic() - before) / len(agents))


def _mobilenetv2(server: RegistryServer, agents: list[Agent], soak_s: float, workdir: Path) -> dict[str, Any]:
    """A full update to the MobileNetV2 fixture, then a kNN-only one, side by side."""
    full = variant(workdir, "3.0.0", source=MOBILENETV2)
    knn = knn_variant(workdir / "knn", "3.0.1", source=full)
    full_bytes = _roll_out(server, agents, full, soak_s)
    knn_bytes = _roll_out(server, agents, knn, soak_s)
    tar = next(server.workdir.glob(f"{knn.name}-*.tar"))
    return {"full_update_bytes_per_device": full_bytes, "knn_only_update_bytes_per_device": knn_bytes,
            "knn_only_over_full": round(knn_bytes / full_bytes, 4), "bundle_tar_bytes": tar.stat().st_size,
            "knn_state_bytes": (knn / "knn_state.npz").stat().st_size}


def run(devices: int, soak_s: float, workdir: Path, services: dict[str, str]) -> dict[str, Any]:
    _count_bytes()
    stop = threading.Event()
    with database(services["TINYMLOPS_TEST_DATABASE_URL"]) as url:
        server = RegistryServer(services, url, workdir / "server")
        try:
            agents = [Agent(workdir / f"dev{i:03d}", server, server.db.enrollment_token(), stop)
                      for i in range(devices)]
            for agent in agents:
                agent.start()
            ids = [a.device_id for a in agents]
            wait_for(lambda: all(a.live_version() == "1.0.0" for a in agents), "the factory bundle everywhere")
            server.publish(FACTORY)

            started = time.monotonic()
            server.publish(DIGITS_V2)
            good = start_rollout(server, "2.0.0", ids, soak_s, wave_timeout_s=300)
            wait_for(lambda: server.api("GET", f"/rollouts/{good['id']}")["state"] != "running",
                     "the good rollout to end", timeout_s=600)
            status = server.api("GET", f"/rollouts/{good['id']}")
            assert status["state"] == "completed", status
            wait_for(lambda: {r["model_version"] for r in server.devices(ids).values()} == {"2.0.0"},
                     "every device to report 2.0.0", timeout_s=300)
            publish_to_full = time.monotonic() - started
            with _LOCK:
                good_bytes = sum(_BYTES.values())
            wait_for(lambda: all(str(a.updater.record.state) == "COMMITTED" for a in agents), "every commit",
                     timeout_s=120)

            bad_tar = server.publish(alarming_bundle(workdir))
            started = time.monotonic()
            bad = start_rollout(server, BAD_VERSION, ids, soak_s, wave_timeout_s=300)
            max_fraction = 0.0

            def stopped() -> bool:
                nonlocal max_fraction
                touched = sum(1 for a in agents if BAD_VERSION in a.seen)
                max_fraction = max(max_fraction, touched / devices)
                state = server.api("GET", f"/rollouts/{bad['id']}")["state"]
                reported = {r["model_version"] for r in server.devices(ids).values()}
                return state != "running" and reported == {"2.0.0"}

            wait_for(stopped, "the bad rollout to be stopped and rolled back", timeout_s=300, every_s=0.25)
            rollback = time.monotonic() - started
            status = server.api("GET", f"/rollouts/{bad['id']}")
            server.api("POST", f"/rollouts/{bad['id']}/abort")  # paused: its devices may join the next one
            (workdir / "knn").mkdir()
            mobilenetv2 = _mobilenetv2(server, agents, soak_s, workdir)
            return {
                "devices": devices,
                "agents": "in-process (real updater + heartbeat per device, synthetic inference health)",
                "soak_s": soak_s,
                "publish_to_full_s": round(publish_to_full, 2),
                "rollback_s": round(rollback, 2),
                "bad_bundle_max_fraction": round(max_fraction, 4),
                "bad_rollout_state": status["state"],
                "bad_rollout_wave": status["current_wave"],
                "bytes_per_device": round(good_bytes / devices),
                "bundle_tar_bytes": bad_tar.stat().st_size,
                "mobilenetv2": mobilenetv2,
            }
        finally:
            stop.set()
            server.close()


def _services() -> tuple[dict[str, str], Any]:
    names = ("TINYMLOPS_TEST_DATABASE_URL", "TINYMLOPS_TEST_S3_ENDPOINT")
    if all(os.environ.get(n) for n in names):
        return {k: v for k, v in os.environ.items() if k.startswith("TINYMLOPS_TEST_")}, None
    from tests.server import services

    return services.up()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--devices", type=int, default=50)
    parser.add_argument("--soak", type=float, default=3.0, help="soak time of every wave, seconds")
    parser.add_argument("--json", action="store_true", help="print JSON only")
    args = parser.parse_args(argv)
    env, started = _services()
    try:
        with tempfile.TemporaryDirectory(prefix="rollout-bench-") as tmp:
            result = run(args.devices, args.soak, Path(tmp), env)
    finally:
        if started is not None:
            from tests.server import services

            services.down(started)
    if args.json:
        print(json.dumps(result))
    else:
        for key, value in result.items():
            print(f"{key:>24}: {value}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
