"""A signed registry and a fleet of real devices for the rollout tests and benchmark.

`RegistryServer` is `tinysphere serve --worker` on its own database with the online TUF keys of a key
directory made by `tinysphere keys init`; `FleetDevice` is one device as shipped: `tinylcm run` and
`tinylcm updater` sharing a data dir, enrolled with a token, with the repository's root pinned.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.request
import uuid
from pathlib import Path
from typing import Any

from simulator import FleetSpec
from simulator.bundles import drifting_bundle
from simulator.devices import DeviceSetup
from simulator.processes import ProcessDevice
from tests.e2e.server_proc import ROOT, ServerDatabase, ServerProcess

FACTORY = ROOT / "device" / "models" / "digits"
DIGITS_V2 = ROOT / "benchmarks" / "fixtures" / "digits-v2"
ROLLOUT_DB = "tinysphere_rollout_"  # how the e2e tests' databases are named (`tests.utils.databases`)


# -- bundles ------------------------------------------------------------------------------------

def alarming_bundle(dest: Path, version: str = "2.0.1") -> Path:
    """v2 with a drift reference no real frame matches (see `simulator.bundles`)."""
    return drifting_bundle(DIGITS_V2, dest, version)


# -- server -------------------------------------------------------------------------------------

class RegistryServer:
    """The real server holding the online snapshot/timestamp keys, root v1 pushed, operator token ready."""

    def __init__(self, services: dict[str, str], database_url: str, workdir: Path, tick_s: float = 0.5) -> None:
        from server.registry import offline

        self.keys = workdir / "keys"
        offline.init(self.keys)
        env = {
            "TINYSPHERE_ENVIRONMENT": "production",
            "TINYSPHERE_DATABASE_URL": database_url,
            "TINYSPHERE_S3_ENDPOINT": services["TINYMLOPS_TEST_S3_ENDPOINT"],
            "TINYSPHERE_S3_ACCESS_KEY": services["TINYMLOPS_TEST_S3_ACCESS_KEY"],
            "TINYSPHERE_S3_SECRET_KEY": services["TINYMLOPS_TEST_S3_SECRET_KEY"],
            "TINYSPHERE_S3_TIMEOUT_S": "5",
            "TINYSPHERE_BUCKET_PREFIX": f"ro{uuid.uuid4().hex[:8]}-",
            "TINYSPHERE_WORKER_POLL_S": "0.2",
            "TINYSPHERE_ROLLOUT_TICK_S": str(tick_s),
            "TINYSPHERE_TUF_SNAPSHOT_KEY_FILE": str(self.keys / "snapshot.key"),
            "TINYSPHERE_TUF_TIMESTAMP_KEY_FILE": str(self.keys / "timestamp.key"),
        }
        self.process = ServerProcess(env, workdir / "server.log").start()
        self.db = ServerDatabase(database_url)
        self.operator = self.db.operator_token()
        self.workdir = workdir
        self._cli("keys", "push-root", "--dir", str(self.keys), "--server", self.url, "--token", self._admin())

    @property
    def url(self) -> str:
        return self.process.url

    def _admin(self) -> str:
        from sqlalchemy.orm import Session

        from server.db.models import Role
        from server.identity import create_api_token

        with Session(self.db.engine) as session:
            token = create_api_token(session, "rollout admin", Role.admin)
            session.commit()
        return token

    def _cli(self, *argv: str) -> None:
        proc = subprocess.run([sys.executable, "-m", "server.cli", *argv], cwd=ROOT, capture_output=True,
                              text=True, timeout=120,
                              env={k: v for k, v in os.environ.items() if not k.startswith("TINYSPHERE_")})
        assert proc.returncode == 0, f"tinysphere {' '.join(argv[:2])} failed: {proc.stdout}{proc.stderr}"

    def publish(self, bundle: Path) -> Path:
        """`tinysphere bundle build` + `bundle publish --key targets.key`, as an operator does; the tar."""
        tar = self.workdir / f"{bundle.name}-{uuid.uuid4().hex[:6]}.tar"
        self._cli("bundle", "build", str(bundle), "--out", str(tar))
        self._cli("bundle", "publish", str(tar), "--key", str(self.keys / "targets.key"), "--server", self.url,
                  "--token", self.operator)
        return tar

    def api(self, method: str, path: str, body: Any = None) -> Any:
        request = urllib.request.Request(
            f"{self.url}/api/v1{path}", method=method,
            data=None if body is None else json.dumps(body).encode(),
            headers={"Authorization": f"Bearer {self.operator}", "Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=30) as response:
            return json.loads(response.read() or b"null")

    def devices(self, ids: list[str]) -> dict[str, dict[str, Any]]:
        rows = self.db.rows("SELECT id, model_version, update_state, health FROM devices WHERE id = ANY(:ids)",
                            ids=ids)
        return {row["id"]: row for row in rows}

    def close(self) -> None:
        self.process.stop()
        self.db.close()


# -- devices ------------------------------------------------------------------------------------


GATES = {"max_drift_alarm_rate": 15, "max_error_rate": 0.05, "max_p95_latency_ratio": 4.0,
         "min_healthy_fraction": 0.9}


def start_rollout(registry: RegistryServer, version: str, ids: list[str], soak_s: float,
                  wave_timeout_s: float) -> dict[str, Any]:
    """Three waves (a canary, half, all) of `version` to the devices `ids`, under `GATES`."""
    return registry.api("POST", "/rollouts", {
        "model": "digits", "bundle_version": version, "selector": {"device_ids": ids},
        "waves": [{"count": 1, "soak_s": soak_s}, {"fraction": 0.5, "soak_s": soak_s},
                  {"fraction": 1.0, "soak_s": soak_s}],
        "gates": GATES, "wave_timeout_s": wave_timeout_s})


class FleetDevice(ProcessDevice):
    """One device as the simulator runs it: `tinylcm run` + `tinylcm updater` over one data dir."""

    def __init__(self, workdir: Path, server: RegistryServer, *, fps: float = 10, probation_s: float = 8,
                 seed: int = 0) -> None:
        setup = DeviceSetup(seed, workdir, server.url, server.db.enrollment_token(),
                            (server.keys / "1.root.json").read_bytes())  # root v1, pinned at provisioning
        spec = FleetSpec(devices=1, duration_s=1, mode="processes", fps=fps, heartbeat_s=1, sync_s=2,
                         probation_s=probation_s)
        super().__init__(setup, spec)
        # the appliance runs whatever models/current points to: the factory bundle 1.0.0 until the
        # updater (which installs the factory bundle into slot-a on first start) flips it

    def updater_history(self) -> list[dict[str, Any]]:
        return list(self.setup.update_state().get("history", []))
