"""Server benchmark: heartbeat throughput and latency, and package ingest rate.

Starts a real `tinysphere serve` process (one uvicorn worker) on PostgreSQL, the S3 server and the MLflow
server of `scripts/services` (started when missing), enrolls 1000 devices, then drives heartbeats over
loopback: a closed loop of concurrent connections cycling through the devices (throughput, latency), and an
open loop at a fixed rate (latency at that load). In the same run, the same closed loop against a bare
Starlette route doing the same work (SHA-256 of the secret, the heartbeat's one `UPDATE … RETURNING` on a
psycopg async connection, a small JSON answer; one uvicorn worker too) gives the floor the route is compared
with (`heartbeat_vs_bare`); the CPU time each server process spends per heartbeat (`heartbeat_server_cpu_us`,
`heartbeat_cpu_vs_bare`) is steadier than the rates on a shared machine. Finally it times packages from upload to
imported (worker, objects and MLflow run included) with one `tinysphere worker` process, then with two. Packages
are what a device sends: about 30 s at 5 fps (150 predictions, 3 metric records, 3 drift events with their JPEG
samples), built by the device's own packer. For each ingest run it also reports what a package cost: the CPU
time of every process involved (worker, API, moto_server, MLflow server, PostgreSQL backends) and the object
requests moto_server served, and from them the rate this machine's cores allow (`Usage`, `_ingest_half`).
moto_server closes its connection after every answer, which MinIO does not: its requests cost more than
MinIO's would. `--only heartbeat` or `--only ingest` runs one half; `--profile-worker FILE` samples the one
worker with py-spy.

    python -m benchmarks.server --json
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import io
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
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import numpy as np
import psycopg
from PIL import Image
from psycopg import sql
from sqlalchemy.engine import make_url

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from device.outbox.records import PRIORITY, Record  # noqa: E402
from device.sync.package import ImagePolicy  # noqa: E402
from device.sync.package import build as build_package  # noqa: E402
from tests.server import services  # noqa: E402

PREDICTIONS, METRICS, DRIFT_EVENTS = 150, 3, 3  # one package: ~30 s of a device at 5 fps


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])



def _wait_healthy(base: str, what: str, timeout_s: float = 60.0) -> None:
    """Return once `base`/healthz answers; RuntimeError after `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"{base}/healthz", timeout=2):
                return
        except OSError:
            time.sleep(0.2)
    raise RuntimeError(f"{what} did not start")

def _cpu_s(pid: int) -> float:
    """User plus system CPU seconds of process `pid` so far (all its threads), from /proc/<pid>/stat."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _processes() -> dict[int, tuple[int, str]]:
    """Every process: pid -> (parent pid, command line)."""
    found = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                parent = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
                found[int(entry.name)] = (parent, (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode())
            except (OSError, ValueError):
                continue  # gone meanwhile
    return found


def _tree(pid: int, table: dict[int, tuple[int, str]]) -> list[int]:
    """`pid` and its descendants."""
    pids, frontier = [pid], [pid]
    while frontier:
        frontier = [child for child, (parent, _) in table.items() if parent in frontier]
        pids += frontier
    return pids


class Usage:
    """CPU seconds of each process behind an ingest run, and the object-store requests made meanwhile.

    Groups: the worker processes, the API, moto_server, the MLflow server (with its children), the
    PostgreSQL backends of the bench database (`postgres`) and those of MLflow's (`postgres_mlflow`). CPU is
    read from /proc (a backend that exits in between loses its share). Requests are the lines moto_server
    logs for the bench's buckets (the tinysphere share) and for MLflow's artifact bucket (MLflow's share;
    other users of the shared MLflow server would count there too)."""

    def __init__(self, stack: Stack, workers: list[int]) -> None:
        self.stack = stack
        table = _processes()
        self.groups: dict[str, list[int]] = {"worker": workers, "api": [stack.api_pid]}
        for name in ("moto", "mlflow"):
            info = services._running(name)  # noqa: SLF001 - the services' own record of their pids
            if info is not None and f":{info['port']}" in stack.service_urls[name]:
                self.groups[name] = _tree(info["pid"], table)
        self.cpu = self._cpu()
        self.imported: dict[str, float] | None = None  # set by `mark_imported`
        self.end: dict[str, float] | None = None  # set by `settle`
        self.log = services.STATE / "moto.log" if "moto" in self.groups else None
        self.log_offset = self.log.stat().st_size if self.log else 0

    def _cpu(self) -> dict[str, float]:
        table = _processes()
        for group, database in (("postgres", self.stack.db), ("postgres_mlflow", services.MLFLOW_DB)):
            self.groups[group] = sorted(set(self.groups.get(group, [])) | {  # new backends count from zero
                pid for pid, (_, cmd) in table.items() if cmd.startswith("postgres: ") and f" {database} " in cmd})
        totals = {}
        for name, pids in self.groups.items():
            total = 0.0
            for pid in pids:
                try:
                    total += _cpu_s(pid)
                except OSError:
                    continue
            totals[name] = total
        return totals

    def mark_imported(self) -> None:
        """The last package is imported: what was spent so far is the import path's, the rest MLflow's flush."""
        self.imported = self._cpu()

    def settle(self, artifacts: int, quiet_s: float = 6.0, timeout_s: float = 90.0) -> bool:
        """Wait until MLflow's flush, which runs after the imports (every 5 s), is over: `artifacts` uploads reached
        MLflow's bucket and every group was idle for `quiet_s` (under 5 % of a core each), at most `timeout_s`.
        The CPU counted ends where that quiet window began, so the idle polling of the wait is left out. False if
        the wait ran out (a busy machine): the figures then miss part of MLflow's flush."""
        deadline = time.monotonic() + timeout_s
        last = self._cpu()
        while time.monotonic() < deadline:
            time.sleep(quiet_s)
            now = self._cpu()
            idle = all(now[name] - last.get(name, 0.0) < 0.05 * quiet_s for name in now)
            if idle and (self.log is None or self._requests().get("mlflow_PUT", 0) >= artifacts):
                self.end = last
                return True
            last = now
        self.end = last
        return False

    def _requests(self) -> dict[str, int]:
        """The requests moto_server logged since the start for the bench's buckets and MLflow's, by method."""
        if self.log is None:
            return {}
        with self.log.open("rb") as log:
            log.seek(self.log_offset)
            lines = log.read().decode(errors="replace").splitlines()
        prefix = self.stack.env["TINYSPHERE_BUCKET_PREFIX"]
        mlflow_bucket = self.stack.service_urls["mlflow_bucket"]
        requests: dict[str, int] = {}
        for line in lines:
            if '"' not in line:
                continue
            method, _, path = line.split('"')[1].partition(" ")
            owner = ("tinysphere" if path.startswith(f"/{prefix}") else
                     "mlflow" if path.startswith(f"/{mlflow_bucket}") else None)
            if owner is not None:
                kind = f"{owner}_{method}" + ("_tagging" if "tagging" in path.split(" ")[0] else "")
                requests[kind] = requests.get(kind, 0) + 1
        return requests

    def per_package(self, count: int) -> dict[str, Any]:
        """CPU milliseconds per package of each group and all of them, object requests per package by method."""
        end = self.end or self._cpu()
        cpu = {name: round(1000 * (end[name] - self.cpu.get(name, 0.0)) / count, 2) for name in end}
        result: dict[str, Any] = {"cpu_ms": {**cpu, "total": round(sum(cpu.values()), 2)}}
        if self.imported is not None:
            until = {name: round(1000 * (self.imported[name] - self.cpu.get(name, 0.0)) / count, 2)
                     for name in self.imported}
            result["cpu_ms_until_imported"] = {**until, "total": round(sum(until.values()), 2)}
        if self.log is not None:
            requests = self._requests()
            result["object_requests"] = {k: round(v / count, 2) for k, v in sorted(requests.items())}
            result["object_requests"]["total"] = round(sum(requests.values()) / count, 2)
        return result


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
        self.service_urls = {"moto": env["TINYMLOPS_TEST_S3_ENDPOINT"], "mlflow": env["TINYMLOPS_TEST_MLFLOW_URI"],
                             "mlflow_bucket": env.get("TINYMLOPS_TEST_MLFLOW_S3_BUCKET", services.MLFLOW_BUCKET)}
        self.processes: list[subprocess.Popen[bytes]] = []
        self.api_pid = 0
        self.worker_pids: list[int] = []

    def start_api(self) -> str:
        argv = [sys.executable, "-m", "server.cli", "--log-level", "WARNING", "serve", "--port", str(self.port),
                "--no-access-log", "--no-worker"]
        api = subprocess.Popen(argv, env=self.env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        self.processes.append(api)
        self.api_pid = api.pid
        assert api.stdout is not None
        token = api.stdout.readline().decode().split()[-1]
        _wait_healthy(self.base, "API")
        return token

    def start_bare(self) -> str:
        """The bare same-work route in a process of its own (started last); returns its base URL."""
        port = _free_port()
        argv = [sys.executable, "-m", "benchmarks.server", "--serve-bare", str(port)]
        self.processes.append(subprocess.Popen(argv, env=self.env, cwd=ROOT, stdout=subprocess.DEVNULL,
                                               stderr=subprocess.DEVNULL))
        base = f"http://127.0.0.1:{port}"
        _wait_healthy(base, "bare route")
        return base

    def stop_last(self) -> None:
        """Stop the process started last."""
        process = self.processes.pop()
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=30)

    def start_worker(self) -> None:
        argv = [sys.executable, "-m", "server.cli", "--log-level", "WARNING", "worker"]
        quiet = subprocess.DEVNULL
        self.processes.append(subprocess.Popen(argv, env=self.env, stdout=quiet, stderr=quiet))
        self.worker_pids.append(self.processes[-1].pid)

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
                      concurrency: int, duration_s: float, server_pid: int | None = None) -> dict[str, float]:
    """A closed loop: `concurrency` connections each sending its next heartbeat once the last one is answered.
    With `server_pid`, also the CPU time that server process spent per heartbeat: steadier than the rate on a
    shared machine, since what other processes take does not count."""
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

    cpu = _cpu_s(server_pid) if server_pid else 0.0
    began = time.perf_counter()
    await asyncio.gather(*(connection(i) for i in range(concurrency)))
    elapsed = time.perf_counter() - began
    latencies.sort()
    result = {"heartbeat_rps": round(len(latencies) / elapsed, 1),
              "heartbeat_p50_ms": round(1000 * statistics.median(latencies), 2),
              "heartbeat_p99_ms": round(1000 * latencies[int(0.99 * (len(latencies) - 1))], 2),
              "heartbeat_errors": errors, "heartbeat_concurrency": concurrency}
    if server_pid:
        result["heartbeat_server_cpu_us"] = round(1e6 * (_cpu_s(server_pid) - cpu) / len(latencies))
    return result


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


def _jpeg(index: int) -> bytes:
    """A camera-like frame (noise over a gradient), which the packer scales to its 128-pixel thumbnail."""
    rng = np.random.default_rng(index)
    frame = np.linspace(0, 255, 240 * 320 * 3).reshape(240, 320, 3) + rng.normal(0, 40, (240, 320, 3))
    buffer = io.BytesIO()
    Image.fromarray(frame.clip(0, 255).astype(np.uint8)).save(buffer, "JPEG", quality=85)
    return buffer.getvalue()


def _device_package(device_id: str, first_seq: int) -> tuple[str, bytes, str]:
    """(package id, body, SHA-256) of ~30 s of a device: predictions at 5 fps, metrics, drift events."""
    frames = PREDICTIONS + METRICS + DRIFT_EVENTS
    start = time.time() - 30
    samples: dict[str, bytes] = {}
    records = []
    for n in range(frames):
        seq, ts = first_seq + n, datetime.fromtimestamp(start + n * 30 / frames, UTC).isoformat()
        blob = None
        if n % (frames // METRICS) == frames // METRICS - 1:
            kind = "metric"
            data: dict[str, Any] = {"metrics": {"latency_ms_p95": 41.5, "drift_alarm_rate": 0.02, "error_rate": 0.0,
                                                "frames": 50, "confidence": 0.87}, "model_version": "1.0.0"}
        elif n % (frames // DRIFT_EVENTS) == frames // DRIFT_EVENTS // 2:
            kind, blob = "drift_event", f"{seq}.jpg"
            samples[blob] = _jpeg(seq)
            data = {"detector": "knn_distance", "statistic": 3.5, "threshold": 2.0, "frame_seq": seq, "label": "cat",
                    "confidence": 0.41, "model_version": "1.0.0", "vector": [round(0.05 * i, 5) for i in range(16)]}
        else:
            kind = "prediction"
            data = {"frame_seq": seq, "label": "cat", "confidence": 0.9132, "model_label": "cat",
                    "model_confidence": 0.9132, "latency_ms": 38.211, "drift": False, "model_version": "1.0.0"}
        text = json.dumps(data, separators=(",", ":"))
        records.append(Record(seq, kind, ts, PRIORITY[kind], text, blob, len(text)))
    package = build_package(device_id, records, samples.get, ImagePolicy())
    return package.package_id, package.body, package.sha256


async def _upload(http: aiohttp.ClientSession, base: str, device: tuple[str, str], package: tuple[str, bytes, str],
                  ) -> str:
    device_id, secret = device
    package_id, body, sha256 = package
    headers = {"Authorization": f"Bearer {secret}", "X-Content-SHA256": sha256, "Content-Type": "application/gzip"}
    async with http.put(f"{base}/api/v1/sync/packages/{package_id}", data=body, headers=headers) as response:
        assert response.status == 201, await response.text()
    return package_id


async def _ingest(stack: Stack, http: aiohttp.ClientSession, devices: list[tuple[str, str]],
                  count: int, first_seq: int, profile: Path | None = None) -> dict[str, Any]:
    """Packages per second from the first upload to the last one imported; then, once MLflow's flush is over too,
    the CPU time and object requests each package cost (`Usage`). With `profile`, py-spy samples the workers
    meanwhile (the threads holding the GIL: where its Python CPU goes) and writes their collapsed stacks there."""
    packages = [_device_package(devices[i][0], first_seq) for i in range(count)]
    usage = Usage(stack, stack.worker_pids)
    spy = None
    if profile is not None:
        argv = ["py-spy", "record", "--format", "raw", "--rate", "200", "--nonblocking", "--gil", "-o", str(profile),
                "--pid", str(stack.worker_pids[-1])]
        spy = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(1.0)  # attached before the first upload
    began = time.perf_counter()
    ids = list(await asyncio.gather(*(_upload(http, stack.base, devices[i], packages[i]) for i in range(count))))
    uploaded = time.perf_counter() - began
    while stack.imported(ids) < count:
        await asyncio.sleep(0.05)
    elapsed = time.perf_counter() - began
    load = os.getloadavg()[0]
    usage.mark_imported()
    settled = await asyncio.to_thread(usage.settle, DRIFT_EVENTS * count)  # each drift sample: an MLflow artifact
    if spy is not None:  # MLflow's flush included
        spy.send_signal(signal.SIGINT)
        spy.wait(timeout=60)
    return {"ingest_packages_per_s": round(count / elapsed, 2), "upload_per_s": round(count / uploaded, 1),
            "bytes_per_package": round(statistics.mean(len(p[1]) for p in packages)),
            "load_average_1m": round(load, 2), "mlflow_flush_complete": settled, **usage.per_package(count)}


def _bare_app() -> Any:
    """The bare same-work route: bearer secret hashed, the heartbeat's UPDATE, a small JSON answer."""
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse, PlainTextResponse
    from starlette.routing import Route

    from server.fleet import _HEARTBEAT
    from server.ratelimit import CredentialLimits, Kind

    url = make_url(os.environ["TINYSPHERE_DATABASE_URL"]).set(drivername="postgresql")
    conninfo = url.render_as_string(hide_password=False)
    limits = CredentialLimits()
    idle: asyncio.Queue[psycopg.AsyncConnection[Any]] = asyncio.Queue()

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        for _ in range(10):
            idle.put_nowait(await psycopg.AsyncConnection.connect(conninfo, autocommit=True))
        yield

    async def heartbeat(request: Request) -> JSONResponse:
        secret = request.headers["authorization"].removeprefix("Bearer ")
        body = await request.json()
        keys = limits.keys(Kind.bearer, request.client.host if request.client else "", secret)
        params = {"model_version": body.get("model_version"), "update_state": body.get("update_state"),
                  "outbox_depth": body.get("outbox_depth"), "evictions": body.get("evictions"),
                  "health": json.dumps(body["health"]) if body.get("health") is not None else None,
                  "device_id": request.path_params["device_id"], "acked": body.get("acked_labels", []),
                  "secret_hash": hashlib.sha256(secret.encode()).hexdigest(), **limits.blocked_params(keys)}
        conn = await idle.get()
        try:
            row = await (await conn.execute(_HEARTBEAT, params)).fetchone()
        finally:
            idle.put_nowait(conn)
        if row is None:
            return JSONResponse({"detail": "unauthorized"}, 401)
        target = row[3]
        return JSONResponse({"desired": {"bundle_version": row[0], "model": row[1] or None, "target": target},
                             "labels": []})

    async def healthz(request: Request) -> PlainTextResponse:
        return PlainTextResponse("ok")

    return Starlette(routes=[Route("/api/v1/devices/{device_id}/heartbeat", heartbeat, methods=["POST"]),
                             Route("/healthz", healthz)], lifespan=lifespan)


async def _run(stack: Stack, token: str, args: argparse.Namespace) -> dict[str, Any]:
    connector = aiohttp.TCPConnector(limit=args.concurrency + 16)
    async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=60)) as http:
        devices = await _enroll(http, stack.base, token, args.devices)
        result: dict[str, Any] = {"devices": len(devices)}
        if args.only in (None, "heartbeat"):
            result.update(await _heartbeat_half(stack, http, devices, args))
        if args.only in (None, "ingest"):
            result.update(await _ingest_half(stack, http, devices, args))
    return result


async def _heartbeat_half(stack: Stack, http: aiohttp.ClientSession, devices: list[tuple[str, str]],
                          args: argparse.Namespace) -> dict[str, Any]:
    """Closed and open loop against the API, then the closed loop against the bare route (its process stopped)."""
    await _heartbeats(http, stack.base, devices, args.concurrency, 2.0)  # warm-up
    result: dict[str, Any] = {}
    result.update(await _heartbeats(http, stack.base, devices, args.concurrency, args.duration_s,
                                    stack.api_pid))
    result.update(await _open_loop(http, stack.base, devices, args.rate, args.duration_s))
    bare = stack.start_bare()
    await _heartbeats(http, bare, devices, args.concurrency, 2.0)  # warm-up
    floor = await _heartbeats(http, bare, devices, args.concurrency, args.duration_s,
                              stack.processes[-1].pid)  # the bare route's process, started last
    result.update({"bare_heartbeat_rps": floor["heartbeat_rps"], "bare_heartbeat_p99_ms": floor["heartbeat_p99_ms"],
                   "bare_heartbeat_errors": floor["heartbeat_errors"],
                   "bare_heartbeat_server_cpu_us": floor["heartbeat_server_cpu_us"],
                   "heartbeat_vs_bare": round(result["heartbeat_rps"] / floor["heartbeat_rps"], 2),
                   "heartbeat_cpu_vs_bare": round(result["heartbeat_server_cpu_us"]
                                                  / floor["heartbeat_server_cpu_us"], 2)})
    stack.stop_last()  # the bare route's process: it must not compete with the workers
    return result


async def _ingest_half(stack: Stack, http: aiohttp.ClientSession, devices: list[tuple[str, str]],
                       args: argparse.Namespace) -> dict[str, Any]:
    """Packages from upload to imported with one worker process, then with two; what each package cost.

    `ingest_cpu_ms_per_package_*` is the CPU time per package of each process involved (MLflow's flush, which
    ends after the last import, included; `..._until_imported_*` stops at the last import) and
    `ingest_object_requests_per_package_*` the requests moto_server served per package. From them:
    `ingest_capacity_per_s_if_cpu_bound_*`, the rate this machine's cores allow for that much CPU per package
    (`..._without_mlflow_server_*`: with the MLflow server and its database elsewhere, as its flush is off the
    import path anyway), and per process the rate it could carry with a core of its own
    (`ingest_capacity_per_s_one_core_*`; moto_server and one worker are each one Python process, so one core
    is their ceiling; `ingest_first_cap_*` names the lowest)."""
    result: dict[str, Any] = {}
    cores = os.cpu_count() or 1
    for workers in (1, 2):
        stack.start_worker()
        suffix = f"{workers}_worker{'s' if workers > 1 else ''}"
        profile = args.profile_worker if workers == 1 else None
        ingest = await _ingest(stack, http, devices, args.packages, first_seq=1 + 1000 * workers, profile=profile)
        result[f"ingest_packages_per_s_{suffix}"] = ingest["ingest_packages_per_s"]
        result[f"ingest_upload_per_s_{suffix}"] = ingest["upload_per_s"]
        result[f"ingest_load_average_1m_{suffix}"] = ingest["load_average_1m"]
        result[f"ingest_mlflow_flush_complete_{suffix}"] = ingest["mlflow_flush_complete"]
        result["ingest_bytes_per_package"] = ingest["bytes_per_package"]
        cpu = ingest["cpu_ms"]
        result[f"ingest_cpu_ms_per_package_{suffix}"] = cpu
        result[f"ingest_cpu_ms_per_package_until_imported_{suffix}"] = ingest["cpu_ms_until_imported"]
        if "object_requests" in ingest:
            requests = ingest["object_requests"]
            result[f"ingest_object_requests_per_package_{suffix}"] = requests
            if "moto" in cpu and requests["total"]:  # what one request costs the stand-in
                result[f"ingest_moto_cpu_ms_per_request_{suffix}"] = round(cpu["moto"] / requests["total"], 2)
            if "mlflow" in cpu and requests.get("mlflow_PUT"):  # its run calls and log_batch counted in
                result[f"ingest_mlflow_server_cpu_ms_per_artifact_{suffix}"] = round(
                    cpu["mlflow"] / requests["mlflow_PUT"], 2)
        result[f"ingest_capacity_per_s_if_cpu_bound_{suffix}"] = round(1000 * cores / cpu["total"], 1)
        without_mlflow = cpu["total"] - cpu.get("mlflow", 0.0) - cpu.get("postgres_mlflow", 0.0)
        result[f"ingest_capacity_per_s_if_cpu_bound_without_mlflow_server_{suffix}"] = round(
            1000 * cores / without_mlflow, 1)
        one_core = {name: round(1000 * (workers if name == "worker" else 1) / ms, 1)
                    for name, ms in cpu.items() if name != "total" and ms > 0}
        result[f"ingest_capacity_per_s_one_core_{suffix}"] = one_core
        if one_core:  # the process that caps the rate first, each given a core of its own
            slowest = min(one_core, key=one_core.__getitem__)
            result[f"ingest_first_cap_{suffix}"] = {"process": slowest, "packages_per_s": one_core[slowest]}
    result.update({"ingest_packages": args.packages,
                   "ingest_records_per_package": PREDICTIONS + METRICS + DRIFT_EVENTS})
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--devices", type=int, default=1000)
    parser.add_argument("--concurrency", type=int, default=8, help="concurrent heartbeat connections")
    parser.add_argument("--rate", type=float, default=300.0, help="open-loop heartbeats per second")
    parser.add_argument("--duration-s", type=float, default=10.0)
    parser.add_argument("--packages", type=int, default=200, help="packages per ingest run")
    parser.add_argument("--only", choices=("heartbeat", "ingest"),
                        help="run just the heartbeat half (API and bare route) or the ingest half (default: both)")
    parser.add_argument("--profile-worker", type=Path, metavar="FILE",
                        help="py-spy's collapsed stacks of the one-worker ingest run, written to FILE")
    parser.add_argument("--json", action="store_true", help="print JSON (default: one line per figure)")
    parser.add_argument("--serve-bare", type=int, metavar="PORT", help=argparse.SUPPRESS)  # the bare route's process
    args = parser.parse_args(argv)
    if args.serve_bare:
        import uvicorn

        uvicorn.run(_bare_app(), host="127.0.0.1", port=args.serve_bare, log_level="warning", access_log=False)
        return 0
    env = {k: v for k, v in os.environ.items() if k.startswith("TINYMLOPS_TEST_")}
    if "TINYMLOPS_TEST_MLFLOW_URI" not in env:
        env, _ = services.up()
    stack = Stack(env)
    try:
        result = asyncio.run(_run(stack, stack.start_api(), args))
    finally:
        stack.close()
    result["cpu_count"] = os.cpu_count() or 0
    result["load_average_1m_at_end"] = round(os.getloadavg()[0], 2)
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        for key, value in result.items():
            print(f"{key}: {value}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
