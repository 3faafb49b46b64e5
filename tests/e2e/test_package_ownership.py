"""A package belongs to the device that uploaded it: two real enrolled devices, one uploading under the
other's next package ids before the other can, and the victim still delivers every record exactly once.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import sqlite3
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

import pytest

from contract.package import package_id
from device.outbox.backlog import Backlog
from device.outbox.blobs import BlobDir
from device.outbox.records import Record
from device.outbox.store import RecordStore
from device.outbox.usage import Usage
from device.sync import Package, Packer, PackSettings
from device.sync.package import ImagePolicy, build
from tests.e2e.device_run import Device, LedgerView, account
from tests.e2e.proxy import FaultProxy
from tests.e2e.server_proc import ServerDatabase, ServerProcess
from tests.server.utils import PackageSpec, build_package, record

pytestmark = pytest.mark.slow
NewDevice = Callable[[], Device]
PACK_MAX_BYTES = 4096  # small packages: many ids to squat
SQUATTER_SEQ = 1_000_000  # the squatter's own records under the stolen ids start here


def _put(server: ServerProcess, secret: str, package_id: str, body: bytes) -> tuple[int, dict[str, str]]:
    request = urllib.request.Request(
        f"{server.url}/api/v1/sync/packages/{package_id}", data=body, method="PUT",
        headers={"Authorization": f"Bearer {secret}", "Content-Type": "application/gzip",
                 "X-Content-SHA256": hashlib.sha256(body).hexdigest()},
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return int(response.status), json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return int(exc.code), {}


def _next_packages(device: Device, scratch: Path) -> list[Package]:
    """The packages the device will send, in order: its packer on a copy of its backlog as it is now.

    The copy is read through the outbox's own backlog, not reopened as an `Outbox`: the device goes on
    running, so nothing of a restart (crash accounting) may be applied to the copy.
    """
    scratch.mkdir()
    source, copy = sqlite3.connect(device.data_dir / "outbox.db"), sqlite3.connect(scratch / "outbox.db")
    source.backup(copy)
    source.close()
    copy.close()
    if (device.data_dir / "outbox-blobs").exists():
        shutil.copytree(device.data_dir / "outbox-blobs", scratch / "outbox-blobs")
    store = RecordStore(scratch / "outbox.db")
    rows, size, _ = store.usage()
    backlog = Backlog(store, BlobDir(scratch / "outbox-blobs"), Usage(rows, size, 1 << 40, 0))
    try:
        packer = Packer(backlog, device.device_id, PackSettings(max_bytes=PACK_MAX_BYTES))
        packages = []
        while (package := packer.next_package()) is not None:
            packages.append(package)
            backlog.acknowledge(*package.range)
        return packages
    finally:
        backlog.close()


def _all_committed(view: LedgerView) -> bool:
    """This run's production is over and committed (the first run appended nothing)."""
    appended = sum(view.appended.values())
    return 0 < appended <= len(view.committed)


def _forged(victim_id: str, first: int, last: int) -> tuple[str, bytes]:
    """A package claiming to be the victim's seqs first..last (so under the victim's id for them), other records."""
    records = [Record(seq, "log", "2026-01-01T00:00:00+00:00", 1, '{"message":"forged"}', None, 80)
               for seq in sorted({first, last})]
    forged = build(victim_id, records, lambda _: None, ImagePolicy())
    assert forged.package_id == package_id(victim_id, first, last)
    return forged.package_id, forged.body


def _own(squatter_id: str, stolen_id: str, seq: int) -> bytes:
    """A well-formed package of the squatter's own, under the victim's id."""
    spec = PackageSpec(squatter_id, [record(seq, "log", {"message": "squatter's own"})], package_id=stolen_id)
    return build_package(spec)


def test_a_device_squatting_anothers_next_package_ids_takes_nothing_from_it(
    new_device: NewDevice, proxy: FaultProxy, server: ServerProcess, server_db: ServerDatabase, tmp_path: Path
) -> None:
    victim, squatter = new_device(), new_device()
    assert victim.run(frames=0) == 0 and victim.identity.exists()  # enrolled, nothing to send yet
    assert squatter.run(frames=20, fps=100) == 0  # a real device, with data of its own
    squatter_id, secret = squatter.device_id, json.loads(squatter.identity.read_text())["secret"]

    proxy.down = True  # the victim's backlog waits while the squatter works out its next package ids
    proc = victim.start(frames=60, fps=100, pack_max_bytes=PACK_MAX_BYTES)
    victim.wait_for(_all_committed, proc=proc)
    victim.wait_for(lambda _: victim.in_flight() is not None, proc=proc)  # its first package is fixed
    packages = _next_packages(victim, tmp_path / "predicted")
    assert len(packages) > 3
    # Every id the victim's packer will use, and every id its split of a refused package would use next.
    ranges = [(p.seq_first, last) for p in packages for last in range(p.seq_first, p.seq_last + 1)]
    stolen: dict[str, str] = {}  # id -> what the squatter's package under it must become
    for n, (first, last) in enumerate(ranges):
        if n % 2 == 0:
            stolen_id, body = _forged(victim.device_id, first, last)
        else:
            stolen_id = package_id(victim.device_id, first, last)
            body = _own(squatter_id, stolen_id, SQUATTER_SEQ + n)
        status, answer = _put(server, secret, stolen_id, body)
        assert status == 201 and answer["device_id"] == squatter_id, (status, answer)
        stolen[stolen_id] = "rejected" if n % 2 == 0 else "imported"
    proxy.down = False
    assert proc.wait(120) == 0
    victim.note_outbox()

    result = account("squatted package ids", victim, server_db)
    assert result.lost == 0 and result.duplicated == 0 and result.delivered == result.produced > 0, result.line()
    assert {p["id"] for p in server_db.packages(victim.device_id)} == {p.package_id for p in packages} <= set(stolen)
    assert server_db.device(victim.device_id)["health"]["sync_conflicts"] == 0  # nothing ever collided
    forged_rows = "SELECT count(*) AS n FROM records WHERE device_id = :d AND data->>'message' = 'forged'"
    assert server_db.rows(forged_rows, d=victim.device_id) == [{"n": 0}]

    kept_apart = {p["id"]: p["status"] for p in server_db.wait_imported(squatter_id) if p["id"] in stolen}
    assert kept_apart == stolen  # the squatter's uploads are its own: claims to be the victim refused
    own = [s for s in server_db.seqs(squatter_id) if s >= SQUATTER_SEQ]
    assert sorted(own) == [SQUATTER_SEQ + n for n in range(1, len(ranges), 2)]
