"""One import job's memory follows what the worker read, never what a package claims (real PostgreSQL and S3)."""

from __future__ import annotations

import tarfile
import tracemalloc
import uuid

from fastapi.testclient import TestClient
from sqlalchemy import select

from server.backends import Backends
from server.db.models import Package
from server.worker.runner import Worker
from server.worker.unpack import Limits
from tests.server.tar_bombs import header_block, then_zeros
from tests.server.utils import enroll, upload

JOB_BOUND = 8 << 20  # the unpack's ~1 MiB plus the S3 download's chunks, a session and the job's bookkeeping


def test_a_header_claiming_2_gib_is_rejected_with_its_reason_in_bounded_memory(
        client: TestClient, operator_token: str, backends: Backends, worker: Worker) -> None:
    # 300 KB on the wire, 256 MiB of zeros behind a pax header that claims 2 GiB; the worker runs with the
    # production limits (before, it held everything up to the 256 MiB package limit, then gave up).
    worker.drain()  # what other modules left due, so the job below is the one measured
    device = enroll(client, operator_token)
    body = then_zeros(header_block(tarfile.XHDTYPE, 2 << 30), 256)
    package_id = f"bomb-{uuid.uuid4().hex[:8]}"
    assert upload(client, device, package_id, body).status_code == 201
    worker.limits = Limits(max_bytes=256 << 20, max_members=5000)
    tracemalloc.start()
    try:
        assert worker.run_once()
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < JOB_BOUND, f"peak {peak} bytes"
    with backends.sessions() as session:
        package = session.scalars(select(Package).where(Package.id == package_id)).one()
    assert package.status == "rejected"
    assert package.error == "a tar header declares 2147483648 bytes of extended header (limit 1024)"
