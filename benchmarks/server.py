"""Server benchmark: heartbeat throughput and latency, and package ingest rate.

Starts a real `tinysphere serve` process (one uvicorn worker) and a `tinysphere worker` process on
PostgreSQL, the S3 server and the MLflow server of `scripts/services` (started when missing),
enrolls 1000 devices, then drives heartbeats over loopback: a closed loop of concurrent connections
cycling through the devices (throughput, latency), and an open loop at a fixed rate (latency at that
load). Finally it times packages from upload to imported (worker, objects and MLflow run included).

    python -m benchmarks.server --json
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import time
import urllib.request
import uuid
from pathlib import Path
from typing import Any

import aiohttp
import psycopg
from psycopg import sql
from sqlalchemy.engine import make_url

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.server import services  # noqa: E402
from tests.server.utils import JPEG, PackageSpec, build_package, drift_record, record  # noqa: E402


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Stack:
    """A bench database plus the API and worker processes configured for it."""

    def __init__(self, env: dict[str, str]) -> None:
        self.admin_url = env["TINYMLOPS_TEST_DATABASE_URL"]
        self.db = f"tinysphere_bench_{uuid.uuid4().hex[:8]}"
        with psycopg.connect(self.admin_url, autocommit=True) as conn:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(self.db)))
        self.url = make_url(self.admin_url).set(database=self.db).render_as_string(hide_password=False)
        self.port = _free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.env = {**os.environ, "TINYSPHERE_DATABASE_URL": self.url,
                    "TINYSPHERE_S3_ENDPOINT": env["TINYMLOPS_TEST_S3_ENDPOINT"],
                    "TINYSPHERE_S3_ACCESS_KEY": env["TINYMLOPS_TEST_S3_ACCESS_KEY"],
                    "TINYSPHERE_S3_SECRET_KEY": env["TINYMLOPS_TEST_S3_SECRET_KEY"],
                    "TINYSPHERE_BUCKET_PREFIX": f"b{uuid.uuid4().hex[:8]}-",
                    "TINYSPHERE_MLFLOW_TRACKING_URI": env["TINYMLOPS_TEST_MLFLOW_URI"],
                    "TINYSPHERE_WORKER_POLL_S": "0.2"}
        self.processes: list[subprocess.Popen[bytes]] = []

    def start_api(self) -> str:
        argv = [sys.executable, "-m", "server.cli", "--log-level", "WARNING", "serve", "--port", str(self.port),
                "--no-access-log", "--no-worker"]
        api = subprocess.Popen(argv, env=self.env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        self.processes.append(api)
        assert api.stdout is not None
        token = api.stdout.readline().decode().split()[-1]
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"{self.base}/healthz", timeout=2):
                    return token
            except OSError:
                time.sleep(0.2)
        raise RuntimeError("API did not start")

    def start_worker(self) -> None:
        argv = [sys.executable, "-m", "server.cli", "--log-level", "WARNING", "worker"]
        quiet = subprocess.DEVNULL
        self.processes.append(subprocess.Popen(argv, env=self.env, stdout=quiet, stderr=quiet))

    def imported(self, package_ids: list[str]) -> int:
        with psycopg.connect(make_url(self.url).set(drivername="postgresql").render_as_string(False)) as conn:
            row = conn.execute("SELECT count(*) FROM packages WHERE id = ANY(%s) AND status <> 'queued'",
                               (package_ids,)).fetchone()
        return int(row[0]) if row else 0

    def close(self) -> None:
        for process in self.processes:
            process.send_signal(signal.SIGTERM)
        for process in self.processes:
            process.wait(timeout=30)
        with psycopg.connect(self.admin_url, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(self.db)))


async def _enroll(http: aiohttp.ClientSession, base: str, token: str, count: int) -> list[tuple[str, str]]:
    semaphore = asyncio.Semaphore(16)

    async def one() -> tuple[str, str]:
        async with semaphore:
            auth = {"Authorization": f"Bearer {token}"}
            async with http.post(f"{base}/api/v1/enrollment-tokens", json={}, headers=auth) as response:
                enrollment = (await response.json())["token"]
            async with http.post(f"{base}/api/v1/devices/enroll", json={"hardware": {"model": "bench"}},
                                 headers={"Authorization": f"Bearer {enrollment}"}) as response:
                data = await response.json()
            return data["device_id"], data["device_secret"]

    return list(await asyncio.gather(*(one() for _ in range(count))))


async def _heartbeats(http: aiohttp.ClientSession, base: str, devices: list[tuple[str, str]],
                      concurrency: int, duration_s: float) -> dict[str, float]:
    latencies: list[float] = []
    errors = 0
    deadline = time.perf_counter() + duration_s

    async def connection(offset: int) -> None:
        nonlocal errors
        index = offset
        while time.perf_counter() < deadline:
            device_id, secret = devices[index % len(devices)]
            index += concurrency
            body = {"model_version": "1.0.0", "update_state": "IDLE", "outbox_depth": index % 50,
                    "health": {"fps": 4.2, "ok": True}}
            start = time.perf_counter()
            async with http.post(f"{base}/api/v1/devices/{device_id}/heartbeat", json=body,
                                 headers={"Authorization": f"Bearer {secret}"}) as response:
                await response.read()
                if response.status != 200:
                    errors += 1
            latencies.append(time.perf_counter() - start)

    began = time.perf_counter()
    await asyncio.gather(*(connection(i) for i in range(concurrency)))
    elapsed = time.perf_counter() - began
    latencies.sort()
    return {"heartbeat_rps": round(len(latencies) / elapsed, 1),
            "heartbeat_p50_ms": round(1000 * statistics.median(latencies), 2),
            "heartbeat_p99_ms": round(1000 * latencies[int(0.99 * (len(latencies) - 1))], 2),
            "heartbeat_errors": errors, "heartbeat_concurrency": concurrency}


async def _open_loop(http: aiohttp.ClientSession, base: str, devices: list[tuple[str, str]], rate: float,
                     duration_s: float) -> dict[str, float]:
    """Heartbeats sent on a fixed schedule (devices do not wait for each other), latency per request."""
    latencies: list[float] = []

    async def beat(index: int) -> None:
        device_id, secret = devices[index % len(devices)]
        start = time.perf_counter()
        async with http.post(f"{base}/api/v1/devices/{device_id}/heartbeat", json={"outbox_depth": index % 50},
                             headers={"Authorization": f"Bearer {secret}"}) as response:
            await response.read()
        latencies.append(time.perf_counter() - start)

    tasks = []
    began = time.perf_counter()
    for index in range(int(rate * duration_s)):
        await asyncio.sleep(max(0.0, began + index / rate - time.perf_counter()))
        tasks.append(asyncio.create_task(beat(index)))
    await asyncio.gather(*tasks)
    latencies.sort()
    key = f"heartbeat_p99_ms_at_{int(rate)}_per_s"
    return {key: round(1000 * latencies[int(0.99 * (len(latencies) - 1))], 2)}


async def _upload(http: aiohttp.ClientSession, base: str, device: tuple[str, str], index: int) -> str:
    device_id, secret = device
    records = [drift_record(1, "blobs/f1.jpg")]
    records += [record(seq, "metric", {"metrics": {"fps": 4.0, "latency_ms": 80.0 + seq}}) for seq in range(2, 12)]
    records += [record(seq, "prediction", {"label": "cat", "confidence": 0.9}) for seq in range(12, 40)]
    spec = PackageSpec(device_id, records, {"f1.jpg": JPEG}, package_id=f"bench-{index}-{uuid.uuid4().hex[:6]}")
    body = build_package(spec)
    headers = {"Authorization": f"Bearer {secret}", "X-Content-SHA256": hashlib.sha256(body).hexdigest(),
               "Content-Type": "application/gzip"}
    async with http.put(f"{base}/api/v1/sync/packages/{spec.package_id}", data=body, headers=headers) as response:
        assert response.status == 201, await response.text()
    return spec.package_id


async def _ingest(stack: Stack, http: aiohttp.ClientSession, devices: list[tuple[str, str]],
                  count: int) -> dict[str, float]:
    began = time.perf_counter()
    ids = list(await asyncio.gather(*(_upload(http, stack.base, devices[i], i) for i in range(count))))
    uploaded = time.perf_counter() - began
    while stack.imported(ids) < count:
        await asyncio.sleep(0.2)
    elapsed = time.perf_counter() - began
    return {"ingest_packages_per_s": round(count / elapsed, 2), "ingest_upload_per_s": round(count / uploaded, 1),
            "ingest_packages": count, "ingest_records_per_package": 39}


async def _run(stack: Stack, token: str, args: argparse.Namespace) -> dict[str, Any]:
    connector = aiohttp.TCPConnector(limit=args.concurrency + 16)
    async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=30)) as http:
        devices = await _enroll(http, stack.base, token, args.devices)
        await _heartbeats(http, stack.base, devices, args.concurrency, 2.0)  # warm-up
        result: dict[str, Any] = {"devices": len(devices)}
        result.update(await _heartbeats(http, stack.base, devices, args.concurrency, args.duration_s))
        result.update(await _open_loop(http, stack.base, devices, args.rate, args.duration_s))
        stack.start_worker()
        result.update(await _ingest(stack, http, devices, args.packages))
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--devices", type=int, default=1000)
    parser.add_argument("--concurrency", type=int, default=8, help="concurrent heartbeat connections")
    parser.add_argument("--rate", type=float, default=300.0, help="open-loop heartbeats per second")
    parser.add_argument("--duration-s", type=float, default=10.0)
    parser.add_argument("--packages", type=int, default=100)
    parser.add_argument("--json", action="store_true", help="print JSON (default: one line per figure)")
    args = parser.parse_args(argv)
    env = {k: v for k, v in os.environ.items() if k.startswith("TINYMLOPS_TEST_")}
    if "TINYMLOPS_TEST_MLFLOW_URI" not in env:
        env, _ = services.up()
    stack = Stack(env)
    try:
        result = asyncio.run(_run(stack, stack.start_api(), args))
    finally:
        stack.close()
    result["cpu_count"] = os.cpu_count() or 0
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        for key, value in result.items():
            print(f"{key}: {value}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
