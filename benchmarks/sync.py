"""Outbox and sync throughput, and what the outbox costs a frame while a sync runs.

`python -m benchmarks.sync --json` prints:
- `outbox_insert_per_s`: records/s through `append` + the writer thread's batched commits (synchronous=FULL);
- `sync_records_per_s`: records/s from the outbox to a real server (`tinysphere serve --worker` on
  PostgreSQL + the S3 API, over loopback) until the server acknowledged every package;
- `bytes_per_record`: package bytes on the wire per record (predictions plus drift events with images);
- `frame_outbox_ms_p50/p99/max`: time the per-frame outbox calls take while a sync drains a backlog.
The services come from `TINYMLOPS_TEST_*` (`scripts/services up`) or are started for the run.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import os
import statistics
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from device.outbox import Outbox, OutboxSettings
from device.sync import ClientSettings, PackSettings, SyncLoop, SyncService, SyncSettings


def _jpeg(seed: int) -> bytes:
    rng = np.random.default_rng(seed)
    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 255, (96, 96, 3), dtype=np.uint8)).save(buf, "JPEG", quality=80)
    return buf.getvalue()


JPEG = _jpeg(0)


RNG = np.random.default_rng(1)


def _frame_records(box: Outbox, i: int) -> None:
    """What one frame appends (as `device.runner` does): a prediction, every 50th frame a drift event + image."""
    conf = RNG.random(3)
    box.append("prediction", {"frame_seq": i, "label": str(i % 6), "confidence": round(float(conf[0]), 4),
                              "model_label": str(i % 6), "model_confidence": round(float(conf[1]), 4),
                              "latency_ms": round(3 + float(conf[2]), 3), "drift": [], "model_version": "1.0.0"})
    if i % 50 == 49:
        box.append("drift_event", {"detector": "knn_distance", "statistic": 3.2, "threshold": 2.5, "frame_seq": i,
                                   "label": "3", "confidence": 0.41, "model_version": "1.0.0",
                                   "vector": [round(float(v), 5) for v in RNG.normal(size=32)]}, blob=JPEG)


def insert_rate(workdir: Path, n: int) -> float:
    box = Outbox(workdir / "insert.db", OutboxSettings(queue_size=n * 2))
    started = time.perf_counter()
    for i in range(n):
        _frame_records(box, i)
    box.flush()
    elapsed = time.perf_counter() - started
    count = box.depth()
    box.close()
    return count / elapsed


def _server(workdir: Path) -> tuple[Any, Any, Any]:
    from tests.e2e import conftest as e2e
    from tests.e2e.server_proc import ServerDatabase, ServerProcess
    from tests.server import services

    env = {k: v for k, v in os.environ.items() if k.startswith("TINYMLOPS_TEST_")}
    started: list[str] = []
    if not all(env.get(k) for k in e2e.ENV_VARS):
        env, started = services.up()
    import psycopg
    from psycopg import sql
    from sqlalchemy.engine import make_url

    name = f"tinysphere_bench_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(env["TINYMLOPS_TEST_DATABASE_URL"], autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    url = make_url(env["TINYMLOPS_TEST_DATABASE_URL"]).set(database=name).render_as_string(hide_password=False)
    server_env = {"TINYSPHERE_DATABASE_URL": url, "TINYSPHERE_S3_ENDPOINT": env["TINYMLOPS_TEST_S3_ENDPOINT"],
                  "TINYSPHERE_S3_ACCESS_KEY": env["TINYMLOPS_TEST_S3_ACCESS_KEY"],
                  "TINYSPHERE_S3_SECRET_KEY": env["TINYMLOPS_TEST_S3_SECRET_KEY"],
                  "TINYSPHERE_BUCKET_PREFIX": f"bench{uuid.uuid4().hex[:6]}-", "TINYSPHERE_WORKER_POLL_S": "0.2"}
    server = ServerProcess(server_env, workdir / "server.log").start()

    def cleanup() -> None:
        server.stop()
        db.close()
        with psycopg.connect(env["TINYMLOPS_TEST_DATABASE_URL"], autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
        services.down(started)

    db = ServerDatabase(url)
    return server, db, cleanup


def _settings(url: str, workdir: Path, token: str, name: str) -> SyncSettings:
    return SyncSettings(server_url=url, interval_s=0.2, heartbeat_interval_s=5.0, enrollment_token=token,
                        identity_path=str(workdir / f"{name}-identity.json"), client=ClientSettings(),
                        pack=PackSettings())


def sync_rate(workdir: Path, server: Any, db: Any, n: int) -> dict[str, float]:
    box = Outbox(workdir / "sync.db", OutboxSettings(queue_size=n * 2))
    for i in range(n):
        _frame_records(box, i)
    box.flush()
    records = box.depth()
    loop = SyncLoop(box, _settings(server.url, workdir, db.enrollment_token(), "sync"))

    async def drain() -> float:
        async with loop.client:
            await loop.ensure_identity()
            started = time.perf_counter()
            await loop.sync()
            return time.perf_counter() - started

    elapsed = asyncio.run(drain())
    box.close()
    return {"sync_records_per_s": records / elapsed, "bytes_per_record": loop.bytes_sent / records,
            "sync_packages": loop.packages, "sync_records": records}


def frame_latency(workdir: Path, server: Any, db: Any, backlog: int, frames: int) -> dict[str, float]:
    """Per-frame outbox time (ms) at ~100 frames/s, for the frames that ran while a sync drained `backlog`."""
    box = Outbox(workdir / "frames.db")
    for i in range(backlog):
        box.append("prediction", {"frame_seq": i, "pad": "x" * 200})
        if i % 500 == 499:
            box.flush()
    box.flush()
    service = SyncService(box, _settings(server.url, workdir, db.enrollment_token(), "frames")).start()
    service.trigger()
    times = []
    for i in range(frames):
        if service.loop.delivered >= backlog:  # only frames that ran while the backlog was being synced
            break
        started = time.perf_counter()
        _frame_records(box, i)
        times.append((time.perf_counter() - started) * 1000)
        time.sleep(0.01)
    service.close()
    box.close()
    return {"frame_outbox_ms_p50": statistics.median(times), "frame_outbox_ms_p99": float(np.percentile(times, 99)),
            "frame_outbox_ms_max": max(times), "frames_timed_during_sync": len(times)}


def run(records: int, frames: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="bench-sync-") as tmp:
        workdir = Path(tmp)
        out: dict[str, Any] = {"outbox_insert_per_s": insert_rate(workdir, records)}
        server, db, cleanup = _server(workdir)
        try:
            out.update(sync_rate(workdir, server, db, records))
            out.update(frame_latency(workdir, server, db, backlog=records * 5, frames=frames))
        finally:
            cleanup()
    return {k: round(v, 4) if isinstance(v, float) else v for k, v in out.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--records", type=int, default=10_000, help="records for the insert and sync runs")
    parser.add_argument("--frames", type=int, default=1000, help="frames timed while a sync runs")
    parser.add_argument("--json", action="store_true", help="print JSON on one line")
    args = parser.parse_args()
    print(json.dumps(run(args.records, args.frames), indent=None if args.json else 2))


if __name__ == "__main__":
    main()
