"""The real server for the end-to-end tests: `tinysphere serve --worker` on PostgreSQL and the S3 API,
as a process the tests can kill -9 and start again on the same port.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request
from datetime import timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, text

from tests.utils.net import free_port
from tests.utils.wait import wait_until

ROOT = Path(__file__).resolve().parents[2]


class ServerProcess:
    """One `tinysphere serve --worker` process with `env`; `kill` and `start` keep the port."""

    def __init__(self, env: dict[str, str], log: Path) -> None:
        self.env = env
        self.log = log
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout_s: float = 90) -> ServerProcess:
        argv = [sys.executable, "-m", "server.cli", "--log-level", "WARNING", "serve", "--worker",
                "--port", str(self.port), "--no-access-log"]
        inherited = {k: v for k, v in os.environ.items() if not k.startswith("TINYSPHERE_")}  # only ours count
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, cwd=ROOT,
                                         env={**inherited, **self.env}, start_new_session=True)
        proc = self.proc

        def healthy() -> bool:
            if proc.poll() is not None:
                raise RuntimeError(f"server exited with {proc.returncode}; see {self.log}")
            with urllib.request.urlopen(f"{self.url}/healthz", timeout=2) as response:
                return bool(response.status == 200)

        wait_until(healthy, timeout_s, f"the server to become healthy (see {self.log})", interval=0.2,
                   ignore=(OSError,))
        return self

    def ensure_running(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            self.start()

    def kill(self) -> None:
        """kill -9 (the worker thread with it)."""
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(30)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.kill()


class ServerDatabase:
    """What the server stored, read straight from PostgreSQL, and the enrollment tokens the tests need."""

    def __init__(self, url: str) -> None:
        self.engine = create_engine(url.replace("postgresql://", "postgresql+psycopg://", 1), pool_pre_ping=True)

    def enrollment_token(self) -> str:
        from sqlalchemy.orm import Session

        from server.identity import create_enrollment_token

        with Session(self.engine) as session:
            token = create_enrollment_token(session, timedelta(hours=1))
            session.commit()
        return token

    def operator_token(self) -> str:
        from sqlalchemy.orm import Session

        from server.db.models import Role
        from server.identity import create_api_token

        with Session(self.engine) as session:
            token = create_api_token(session, "e2e operator", Role.operator)
            session.commit()
        return token

    def rows(self, sql: str, **params: Any) -> list[dict[str, Any]]:
        with self.engine.connect() as conn:
            return [dict(r._mapping) for r in conn.execute(text(sql), params)]

    def seqs(self, device_id: str) -> list[int]:
        with self.engine.connect() as conn:
            return [r[0] for r in conn.execute(text("SELECT seq FROM records WHERE device_id = :d"), {"d": device_id})]

    def kinds(self, device_id: str) -> dict[str, int]:
        sql = "SELECT kind, count(*) FROM records WHERE device_id = :d GROUP BY kind"
        with self.engine.connect() as conn:
            return {r[0]: r[1] for r in conn.execute(text(sql), {"d": device_id})}

    def packages(self, device_id: str) -> list[dict[str, Any]]:
        sql = "SELECT id, status, seq_first, seq_last, record_count, error FROM packages WHERE device_id = :d"
        with self.engine.connect() as conn:
            return [dict(r._mapping) for r in conn.execute(text(sql), {"d": device_id})]

    def device(self, device_id: str) -> dict[str, Any]:
        sql = "SELECT evictions, outbox_depth, health FROM devices WHERE id = :d"
        with self.engine.connect() as conn:
            return dict(conn.execute(text(sql), {"d": device_id}).one()._mapping)

    def wait_imported(self, device_id: str, timeout_s: float = 90) -> list[dict[str, Any]]:
        """Wait until no package of the device is still queued for import; the packages."""
        deadline = time.monotonic() + timeout_s
        while True:
            packages = self.packages(device_id)
            if not any(p["status"] == "queued" for p in packages) or time.monotonic() > deadline:
                return packages
            time.sleep(0.3)

    def close(self) -> None:
        self.engine.dispose()
