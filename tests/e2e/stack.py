"""compose.server.yml run as processes on loopback, for the stack test (there is no Docker engine here).

`docker-compose config` gives each service's command and environment, exactly as compose would hand them
to the containers. `Stack` runs the `mlflow` service's command once and the `api` and `worker` commands as
replicas (`deploy.replicas`), each in a directory of its own standing for its container's filesystem:
compose's service addresses become loopback ones (`db:5432` the test PostgreSQL, on fresh databases;
`minio:9000` the S3 API server; `mlflow:5000` and the API's port 8000 free ports on 127.0.0.1), the
online TUF keys are files at the secret paths, and `Site`s from `tests.e2e.balancer` stand in for Caddy.

What is not compose's: a bucket prefix, so the run has buckets of its own in the shared S3 server; the
buckets made here as `minio-init` makes them (the S3 stand-in has no users or policies); the rollout
controller's tick (1 s, not 5 s) and the online metadata's lifetimes (minutes, not days), so the replicas
race for decisions and signings more often than they would in production.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
import uuid
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy.engine import URL, make_url

from tests.e2e.balancer import Site
from tests.e2e.fleet import ROLLOUT_DB
from tests.e2e.server_proc import ServerDatabase
from tests.utils.databases import fresh_database
from tests.utils.net import free_port

BIN = Path(sys.executable).parent
RUN = ("mlflow", "api", "worker")  # the services run as processes; db, minio and the proxy are stand-ins
CONTAINER_PATHS = ("/run/secrets/", "/tmp/")  # paths inside a container, kept per replica
MLFLOW_USER = "operator"  # the proxy's basic auth in front of MLflow (compose: MLFLOW_BASIC_AUTH_USER)

# Log lines of the decisions each replica makes (server/rollouts/controller.py, server/registry/repository.py,
# server/worker/runner.py, server/cli.py).
DECISION = re.compile(r"rollout (\d+) wave (\d+): (\w+) \(")
SIGNED = re.compile(r"\b(snapshot|timestamp) version (\d+) signed\b")
IMPORTED = re.compile(r"imported package (\S+) of (\S+): \d+ records")
ADMIN_TOKEN = re.compile(r"Admin API token \(shown once, keep it\): (\S+)")


def compose_config(workdir: Path, secrets_dir: Path) -> dict[str, Any]:
    """compose.server.yml resolved by `docker-compose config`, with the test secrets and this secrets dir."""
    from tests.server.test_compose import SECRETS, _compose

    result = _compose(workdir, {**SECRETS, "TINYSPHERE_SECRETS_DIR": str(secrets_dir)})
    assert result.returncode == 0, result.stderr
    return dict(json.loads(result.stdout))


@dataclass
class Loopback:
    """Where compose's service addresses are on this machine."""

    addresses: dict[str, str]  # "mlflow:5000" -> "127.0.0.1:41234"
    postgres: URL  # the test PostgreSQL (its admin URL)
    databases: dict[str, str]  # compose's database name -> the fresh one standing for it
    bucket_prefix: str

    def value(self, value: str) -> str:
        """An environment value or argument with compose's addresses replaced."""
        if value.startswith("postgresql") and "@db:" in value:
            url = make_url(value)
            return url.set(host=self.postgres.host, port=self.postgres.port, username=self.postgres.username,
                           database=self.databases[str(url.database)]).render_as_string(hide_password=False)
        if value.startswith("s3://"):  # a bucket of the stack: this run's own
            return f"s3://{self.bucket_prefix}{value.removeprefix('s3://')}"
        return re.sub(r"\b[a-z][a-z0-9-]*:\d+\b", lambda m: self.addresses.get(m.group(0), m.group(0)), value)

    def host(self, name: str) -> str:
        """A bare host name (as in --allowed-hosts): a service's is 127.0.0.1."""
        if ":" in name:
            return self.value(name)
        return "127.0.0.1" if any(a.startswith(f"{name}:") for a in self.addresses) else name


@dataclass
class Replica:
    """One container of a service: its command, environment and filesystem, as a process."""

    name: str  # api-1, worker-2, mlflow
    argv: list[str]
    env: dict[str, str]
    root: Path  # stands for the container's filesystem
    port: int | None  # where it listens (None: it does not)
    health: Callable[[], bool]
    proc: subprocess.Popen[bytes] | None = None

    @property
    def log(self) -> Path:
        return self.root / "output.log"

    def start(self) -> Replica:
        inherited = {k: v for k, v in os.environ.items()
                     if not k.startswith(("TINYSPHERE_", "MLFLOW_", "AWS_", "PG", "TINYMLOPS_"))}
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(self.argv, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                         cwd=self.root, env={**inherited, **self.env}, start_new_session=True)
        return self

    def healthy(self) -> bool:
        if self.proc is None or self.proc.poll() is not None:
            raise AssertionError(f"{self.name} exited ({self.proc and self.proc.returncode}):\n{self.tail()}")
        return self.health()

    def tail(self, chars: int = 4000) -> str:
        return self.log.read_text(errors="replace")[-chars:] if self.log.exists() else ""

    def lines(self) -> list[str]:
        return self.log.read_text(errors="replace").splitlines()

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(30)


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=3) as response:  # noqa: S310 - loopback
            return int(response.status) == 200
    except OSError:
        return False


def _health_url(service: dict[str, Any], port: int) -> str:
    """The URL of the service's own health check (`urlopen('http://localhost:8000/healthz')`), on `port`."""
    found = re.search(r"http://localhost:\d+(/[\w/]*)", json.dumps(service["healthcheck"]["test"]))
    assert found, service["healthcheck"]
    return f"http://127.0.0.1:{port}{found.group(1)}"


def _fresh(path: Path, window_s: float = 90) -> bool:
    """The worker's health check: its file touched within the window."""
    return path.exists() and time.time() - path.stat().st_mtime <= window_s


def replica(config: dict[str, Any], service_name: str, index: int, loopback: Loopback, workdir: Path,
            port: int | None, extra_env: dict[str, str]) -> Replica:
    """Container `index` of `service_name`: compose's command and environment, on loopback."""
    service = config["services"][service_name]
    name = service_name if service.get("deploy", {}).get("replicas", 1) == 1 else f"{service_name}-{index}"
    root = workdir / name
    root.mkdir(parents=True)

    def inside(value: str) -> str:  # a path in the container's filesystem
        return str(root / value.lstrip("/")) if value.startswith(CONTAINER_PATHS) else value

    for secret in service.get("secrets") or []:  # compose mounts each secret file read-only at its target
        target = Path(inside(secret["target"]))
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(config["secrets"][secret["source"]]["file"], target)
        target.chmod(0o400)
    (root / "tmp").mkdir(exist_ok=True)
    env = {key: inside(loopback.value(str(value))) for key, value in (service.get("environment") or {}).items()}
    env.update(extra_env)
    argv = [str(BIN / service["command"][0]), *service["command"][1:]]
    for i, arg in enumerate(argv[1:], start=1):
        flag = argv[i - 1]
        if flag == "--host":
            argv[i] = "127.0.0.1"  # loopback only
        elif flag == "--port":
            assert port is not None
            argv[i] = str(port)
        elif flag == "--allowed-hosts":
            argv[i] = ",".join(loopback.host(h) for h in arg.split(","))
        else:
            argv[i] = inside(loopback.value(arg))
    if port is not None:
        url = _health_url(service, port)
        health: Callable[[], bool] = lambda: _answers(url)  # noqa: E731
    else:
        alive = next(Path(a) for a in argv if a.startswith(str(root / "tmp")))
        health = lambda: _fresh(alive)  # noqa: E731
    return Replica(name, argv, env, root, port, health)


def _depends_on(config: dict[str, Any], name: str) -> set[str]:
    return set(config["services"][name].get("depends_on") or {}) & set(RUN)


def _make_buckets(services: dict[str, str], prefix: str) -> None:
    """What `minio-init` does for the stack's buckets (users and policies have no stand-in here)."""
    from minio import Minio

    from server.storage import BUCKETS

    endpoint = services["TINYMLOPS_TEST_S3_ENDPOINT"].removeprefix("http://")
    s3 = Minio(endpoint, services["TINYMLOPS_TEST_S3_ACCESS_KEY"], services["TINYMLOPS_TEST_S3_SECRET_KEY"],
               secure=False, region="us-east-1")
    for bucket in BUCKETS:
        s3.make_bucket(prefix + bucket)


@dataclass
class Stack:
    """The running stack: replicas by name, the proxy's sites, the operator's keys and tokens, the database."""

    config: dict[str, Any]
    replicas: dict[str, Replica]
    api: Site  # Caddy's TinySphere site: every API replica, round robin
    mlflow: Site  # Caddy's MLflow site: basic auth, Host rewritten
    mlflow_password: str
    keys: Path  # the operator's key directory (root and targets keys; the online ones went to the server)
    db: ServerDatabase
    admin_tokens: list[str] = field(default_factory=list)  # printed by the API replicas' first start
    operator_token: str = ""
    started_s: dict[str, float] = field(default_factory=dict)  # seconds from launch to healthy, per replica

    def of(self, service: str) -> list[Replica]:
        return [r for name, r in sorted(self.replicas.items()) if name == service or name.startswith(f"{service}-")]

    def exec(self, service: str, *argv: str) -> str:
        """`docker compose exec SERVICE tinysphere ARGV`: the CLI with that service's environment; its stdout."""
        target = self.of(service)[0]
        inherited = {k: v for k, v in os.environ.items() if not k.startswith(("TINYSPHERE_", "PG"))}
        done = subprocess.run([str(BIN / "tinysphere"), *argv], cwd=target.root, capture_output=True, text=True,
                              timeout=120, env={**inherited, **target.env})
        assert done.returncode == 0, done.stdout + done.stderr
        return done.stdout.strip()

    def operator(self, *argv: str, env: dict[str, str] | None = None) -> str:
        """`tinysphere ARGV` on the operator's machine (no server settings of its own); its stdout."""
        inherited = {k: v for k, v in os.environ.items() if not k.startswith(("TINYSPHERE_", "MLFLOW_", "PG"))}
        done = subprocess.run([str(BIN / "tinysphere"), *argv], cwd=self.keys.parent, capture_output=True,
                              text=True, timeout=180, env={**inherited, **(env or {})})
        assert done.returncode == 0, f"tinysphere {' '.join(argv[:2])}: {done.stdout}{done.stderr}"
        return done.stdout.strip()

    def who(self, pattern: re.Pattern[str]) -> dict[tuple[str, ...], list[str]]:
        """For each match of `pattern` in any replica's log (keyed by its groups): the replicas that logged it."""
        found: dict[tuple[str, ...], list[str]] = defaultdict(list)
        for name, rep in sorted(self.replicas.items()):
            for line in rep.lines():
                match = pattern.search(line)
                if match:
                    found[match.groups()].append(name)
        return dict(found)

    def split(self, pattern: re.Pattern[str]) -> dict[str, int]:
        """How many lines matching `pattern` each replica logged."""
        return dict(Counter(name for names in self.who(pattern).values() for name in names))


def _start_in_order(config: dict[str, Any], replicas: dict[str, Replica], timeout_s: float) -> dict[str, float]:
    """Start each service once the services it depends on are healthy (compose's `condition: service_healthy`)."""
    began: dict[str, float] = {}
    ready: dict[str, float] = {}
    services = {name: [r for r in replicas.values() if r.name == name or r.name.startswith(f"{name}-")]
                for name in RUN}
    deadline = time.monotonic() + timeout_s
    while len(ready) < len(replicas):
        for name, members in services.items():
            healthy_deps = all(all(r.name in ready for r in services[d]) for d in _depends_on(config, name))
            for member in members:
                if member.name not in began and healthy_deps:
                    began[member.name] = time.monotonic()
                    member.start()
                elif member.name in began and member.name not in ready and member.healthy():
                    ready[member.name] = round(time.monotonic() - began[member.name], 1)
        if time.monotonic() > deadline:
            slow = [r.name for r in replicas.values() if r.name not in ready]
            raise AssertionError(f"not healthy after {timeout_s:.0f} s: {slow}\n" +
                                 "\n".join(f"--- {n}\n{replicas[n].tail(2000)}" for n in slow if n in began))
        time.sleep(0.5)
    return ready


@contextmanager
def running_stack(services: dict[str, str], workdir: Path, start_timeout_s: float = 240) -> Iterator[Stack]:
    """compose.server.yml's mlflow, api and worker services on loopback, behind the stand-in proxy."""
    with ExitStack() as cleanup:
        keys, secrets = workdir / "operator" / "keys", workdir / "secrets"
        secrets.mkdir(parents=True)
        # The key ceremony (README, Production): the online keys go to the server's secrets directory.
        done = subprocess.run([str(BIN / "tinysphere"), "keys", "init", "--out", str(keys)], capture_output=True,
                              text=True, timeout=120, env={k: v for k, v in os.environ.items()
                                                           if not k.startswith("TINYSPHERE_")})
        assert done.returncode == 0, done.stderr
        for role in ("snapshot", "timestamp"):
            shutil.move(keys / f"{role}.key", secrets / f"tuf-{role}.key")
            (secrets / f"tuf-{role}.key").chmod(0o400)
        config = compose_config(workdir, secrets)

        admin = make_url(services["TINYMLOPS_TEST_DATABASE_URL"])
        admin_url = str(services["TINYMLOPS_TEST_DATABASE_URL"])
        names = {"tinysphere": cleanup.enter_context(fresh_database(admin_url, ROLLOUT_DB))}
        names["mlflow"] = cleanup.enter_context(fresh_database(admin_url, ROLLOUT_DB))
        prefix = f"stack{uuid.uuid4().hex[:8]}-"
        _make_buckets(services, prefix)
        ports = {"mlflow": free_port()}
        s3 = services["TINYMLOPS_TEST_S3_ENDPOINT"].removeprefix("http://")
        loopback = Loopback({"minio:9000": s3, "mlflow:5000": f"127.0.0.1:{ports['mlflow']}"}, admin,
                            {k: str(make_url(v).database) for k, v in names.items()}, prefix)
        # Not compose's: buckets of this run's own; the rollout controller ticking every second rather than every
        # 5 s (shorter waves, and the two workers race for each decision five times as often); online metadata
        # expiring in minutes rather than days, so the workers race to re-sign it while the story runs.
        extra = {"TINYSPHERE_BUCKET_PREFIX": prefix, "TINYSPHERE_ROLLOUT_TICK_S": "1",
                 "TINYSPHERE_TUF_TIMESTAMP_EXPIRY_S": "60", "TINYSPHERE_TUF_SNAPSHOT_EXPIRY_S": "120"}
        if admin.password:  # compose's PGPASSWORD is the stack's own; the test PostgreSQL has its own
            extra["PGPASSWORD"] = admin.password
        replicas: dict[str, Replica] = {}
        for service in RUN:
            count = int(config["services"][service].get("deploy", {}).get("replicas", 1))
            for index in range(1, count + 1):
                port = ports["mlflow"] if service == "mlflow" else free_port() if service == "api" else None
                rep = replica(config, service, index, loopback, workdir / "containers", port,
                              extra if service != "mlflow" else {k: v for k, v in extra.items() if k == "PGPASSWORD"})
                replicas[rep.name] = rep
        for rep in replicas.values():
            cleanup.callback(rep.stop)

        password = uuid.uuid4().hex
        api_site = Site([r.port for r in replicas.values() if r.name.startswith("api") and r.port]).start()
        cleanup.callback(api_site.close)
        mlflow_site = Site([ports["mlflow"]], host_header=loopback.value("mlflow:5000"),
                           basic_auth=(MLFLOW_USER, password)).start()
        cleanup.callback(mlflow_site.close)

        started = _start_in_order(config, replicas, start_timeout_s)
        db = ServerDatabase(str(make_url(names["tinysphere"]).render_as_string(hide_password=False)))
        cleanup.callback(db.close)
        stack = Stack(config, replicas, api_site, mlflow_site, password, keys, db, started_s=started)
        tokens = [m.group(1) for r in stack.of("api") for m in map(ADMIN_TOKEN.search, r.lines()) if m]
        assert tokens, "no API replica printed the first admin token"
        stack.admin_tokens = tokens
        stack.operator_token = stack.exec("api", "tokens", "create", "--role", "operator", "--name", "stack")
        stack.operator("keys", "push-root", "--dir", str(keys), "--server", api_site.url, "--token", tokens[0])
        yield stack
