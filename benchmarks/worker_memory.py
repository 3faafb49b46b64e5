"""Worker memory per import job: the peak Python allocations (tracemalloc) of one job, from claim to commit.

On PostgreSQL, the S3 server and the MLflow server of `scripts/services` (started when missing), with the
server's default limits. Packages: a device's default-size one (under 1 MiB compressed), one whose
records.jsonl fills its cap with the same kind of records, one that fills it with JSON crafted to make the
most Python objects per byte, and hostile ones that claim 2 GiB in a header.

    python -m benchmarks.worker_memory --json
"""

from __future__ import annotations

import argparse
import contextlib
import json
import random
import sys
import tarfile
import tracemalloc
import uuid
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql
from sqlalchemy import select
from sqlalchemy.engine import make_url

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from fastapi.testclient import TestClient  # noqa: E402

from server.app import create_app  # noqa: E402
from server.backends import open_backends, open_mlflow  # noqa: E402
from server.config import Settings  # noqa: E402
from server.db.models import Package, Role  # noqa: E402
from server.identity import create_api_token  # noqa: E402
from server.startup import migrate  # noqa: E402
from server.worker.runner import Worker  # noqa: E402
from tests.server import services  # noqa: E402
from tests.server.tar_bombs import header_block, sparse_map_bomb, then_zeros  # noqa: E402
from tests.server.utils import PackageSpec, build_package, drift_record, enroll, record, upload  # noqa: E402

LABELS = ("device_default", "records_at_cap", "crafted_records_at_cap", "pax_header_claims_2GiB",
          "member_claims_2GiB", "sparse_map_bomb")


def _device_records(count: int, seed: int = 0) -> list[dict[str, Any]]:
    """What a device sends: predictions, a metric record every 10th, a drift event with a 256-d vector every 50th."""
    rng = random.Random(seed)
    records = []
    for seq in range(1, count + 1):
        if seq % 50 == 0:
            item = drift_record(seq)
            item["data"]["vector"] = [rng.random() for _ in range(256)]
        elif seq % 10 == 0:
            item = record(seq, "metric", {"metrics": {f"m{i}": rng.random() for i in range(8)}})
        else:
            item = record(seq, "prediction", {"label": str(rng.randrange(10)), "confidence": rng.random(),
                                              "latency_ms": rng.random() * 20, "frame_seq": seq})
        records.append(item)
    return records


def _crafted_records(size: int) -> list[dict[str, Any]]:
    """Records whose data is an array of empty arrays: the most Python objects per byte of JSON."""
    records: list[dict[str, Any]] = []
    while True:
        item = record(len(records) + 1, "prediction", {"x": [[]] * 10_000})
        if _records_bytes([*records, item]) > size:
            return records
        records.append(item)


def _records_bytes(records: list[dict[str, Any]]) -> int:
    return sum(len(json.dumps(r)) + 1 for r in records)


def _run(env: dict[str, str]) -> dict[str, Any]:
    admin = env["TINYMLOPS_TEST_DATABASE_URL"]
    name = f"tinysphere_bench_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    url = make_url(admin).set(database=name).render_as_string(hide_password=False)
    settings = Settings(database_url=url, s3_endpoint=env["TINYMLOPS_TEST_S3_ENDPOINT"],
                        s3_access_key=env["TINYMLOPS_TEST_S3_ACCESS_KEY"],
                        s3_secret_key=env["TINYMLOPS_TEST_S3_SECRET_KEY"],  # type: ignore[arg-type]
                        bucket_prefix=f"b{uuid.uuid4().hex[:8]}-", mlflow_tracking_uri=env["TINYMLOPS_TEST_MLFLOW_URI"])
    migrate(url, settings)
    backends = open_backends(settings, url, mlflow=open_mlflow(settings, env["TINYMLOPS_TEST_MLFLOW_URI"]))
    backends.store.ensure_buckets()
    try:
        with backends.sessions() as session:
            token = create_api_token(session, "bench", Role.operator)
            session.commit()
        with TestClient(create_app(backends)) as client:
            worker = Worker(backends)
            default = _device_records(9000)
            full = _device_records(int(len(default) * worker.limits.max_records_bytes * 0.98
                                       / _records_bytes(default)), seed=1)
            devices = {label: enroll(client, token) for label in LABELS}  # one each: their seq ranges overlap

            def package(records: list[dict[str, Any]], label: str) -> bytes:
                return build_package(PackageSpec(devices[label].device_id, records, package_id=label))

            packages = {
                "device_default": package(default, "device_default"),
                "records_at_cap": package(full, "records_at_cap"),
                "pax_header_claims_2GiB": then_zeros(header_block(tarfile.XHDTYPE, 2 << 30), 48),
                "member_claims_2GiB": then_zeros(header_block(tarfile.REGTYPE, 2 << 30), 48),
                "sparse_map_bomb": sparse_map_bomb(),
            }
            crafted = _crafted_records(worker.limits.max_records_bytes)
            packages["crafted_records_at_cap"] = package(crafted, "crafted_records_at_cap")
            sizes = {"device_default": _records_bytes(default), "records_at_cap": _records_bytes(full),
                     "crafted_records_at_cap": _records_bytes(crafted)}
            worker.drain()  # warm: imports, connections, the MLflow experiment
            results = {}
            for label, body in packages.items():
                package_id = label
                response = upload(client, devices[label], package_id, body)
                assert response.status_code == 201, response.text
                tracemalloc.start()
                worker.run_once()
                peak = tracemalloc.get_traced_memory()[1]
                tracemalloc.stop()
                with backends.sessions() as session:
                    package = session.scalars(select(Package).where(Package.id == package_id)).one()
                results[label] = {"upload_bytes": len(body), "records_jsonl_bytes": sizes.get(label),
                                  "status": package.status, "error": package.error,
                                  "job_peak_mib": round(peak / 2**20, 1)}
            return results
    finally:
        backends.close()
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="print the result as JSON (the only output)")
    parser.parse_args(argv)
    names = ("TINYMLOPS_TEST_DATABASE_URL", "TINYMLOPS_TEST_S3_ENDPOINT", "TINYMLOPS_TEST_MLFLOW_URI")
    with services.environment(names) as env, contextlib.redirect_stdout(sys.stderr):  # MLflow prints run links
        result = _run(env)
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
