"""The sync loop against the contract server: exactly once, across restarts, splits, refusals, conflicts,
heartbeats."""

from __future__ import annotations

import asyncio
import json
import random
import stat
from pathlib import Path
from typing import Any

import pytest

from device.errors import PackageConflictError, ServerUnavailableError
from device.health import prometheus
from device.outbox import Outbox, OutboxSettings
from device.sync import SyncLoop, SyncService
from device.sync.loop import MAX_RENEWALS
from device.sync.packer import Packer
from tests.device.sync.conftest import sync_settings
from tests.device.sync.contract_server import DEVICE_ID, ContractState, Fault
from tests.utils.wait import wait_until


def _produce(box: Outbox, n: int, pad: int = 200) -> list[int]:
    seqs = []
    for i in range(n):
        if i % 10 == 3:
            seqs.append(box.append("drift_event", {"detector": "knn", "i": i}, blob=bytes([i % 256]) * 500))
        else:
            seqs.append(box.append("prediction", {"i": i, "pad": "x" * pad}))
    box.flush()
    return [s for s in seqs if s is not None]


def _sync(loop: SyncLoop) -> int:
    async def main() -> int:
        async with loop.client:
            return await loop.sync()

    return asyncio.run(main())


def _assert_exactly_once(contract: ContractState, seqs: list[int]) -> None:
    assert contract.seqs == set(seqs)
    assert set(contract.imports.values()) == {1}


def _next_id(outbox: Outbox) -> str:
    """The id the oldest records will go under (the packer marks it in flight; the loop rebuilds it)."""
    package = Packer(outbox.backlog, DEVICE_ID).next_package()
    assert package is not None
    return package.package_id


def _puts(contract: ContractState) -> list[tuple[str, int]]:
    return [(path.rsplit("/", 1)[-1], status) for method, path, status in contract.requests if method == "PUT"]


def test_the_backlog_is_delivered_exactly_once_in_capped_packages(
    server_url: str, contract: ContractState, outbox: Outbox, tmp_path: Path
) -> None:
    seqs = _produce(outbox, 300)
    loop = SyncLoop(outbox, sync_settings(server_url, tmp_path, max_bytes=8192))
    assert _sync(loop) == 300
    _assert_exactly_once(contract, seqs)
    assert len(contract.packages) == loop.packages > 3 and outbox.depth() == 0
    assert not any(outbox.blobs.path.iterdir())
    identity = tmp_path / "identity.json"
    assert json.loads(identity.read_text())["device_id"] == DEVICE_ID
    assert stat.S_IMODE(identity.stat().st_mode) == 0o600


def test_a_restart_after_the_upload_but_before_the_delete_resends_the_same_package(
    server_url: str, contract: ContractState, tmp_path: Path
) -> None:
    box = Outbox(tmp_path / "outbox.db", OutboxSettings(linger_s=0))
    seqs = _produce(box, 120)
    settings = sync_settings(server_url, tmp_path, max_bytes=8192)
    loop = SyncLoop(box, settings)

    async def upload_without_ack() -> None:
        async with loop.client:
            await loop.ensure_identity()
            assert loop.packer is not None
            package = loop.packer.next_package()
            assert package is not None and await loop.client.put_package(package)

    asyncio.run(upload_without_ack())
    box.close()  # the device dies before deleting the acknowledged rows
    box = Outbox(tmp_path / "outbox.db", OutboxSettings(linger_s=0))
    box.append("log", {"message": "after restart"})
    box.flush()
    assert _sync(SyncLoop(box, settings)) == 121
    assert [r[2] for r in contract.requests if r[0] == "PUT"][:2] == [201, 200]  # same id, same bytes
    _assert_exactly_once(contract, [*seqs, 121])
    box.close()


def test_a_package_too_large_for_the_server_is_split_and_a_lone_oversized_record_dropped(
    server_url: str, contract: ContractState, outbox: Outbox, tmp_path: Path
) -> None:
    seqs = _produce(outbox, 60)
    big = outbox.append("log", {"message": "core dump"}, blob=random.Random(1).randbytes(10_240), blob_ext="bin")
    outbox.flush()
    contract.max_bytes = 6000
    loop = SyncLoop(outbox, sync_settings(server_url, tmp_path, max_bytes=64 * 1024, droppable_bytes=8192))
    assert _sync(loop) == 60
    _assert_exactly_once(contract, seqs)
    assert big not in contract.seqs and outbox.stats()["rejected"] == 1 and outbox.depth() == 0


def test_a_conflict_keeps_the_records_counts_the_incident_and_resends_under_a_fresh_id(
    server_url: str, contract: ContractState, outbox: Outbox, tmp_path: Path
) -> None:
    seq = outbox.append("log", {"message": "the only copy"})
    outbox.flush()
    squatted = _next_id(outbox)
    contract.packages[(DEVICE_ID, squatted)] = "f" * 64  # other content under this device's next id
    loop = SyncLoop(outbox, sync_settings(server_url, tmp_path))

    async def sync_and_beat() -> int:
        async with loop.client:
            delivered = await loop.sync()
            await loop.heartbeat()
            return delivered

    assert asyncio.run(sync_and_beat()) == 1
    assert _puts(contract) == [(squatted, 409), (f"{squatted}.r1", 201)]
    assert contract.seqs == {seq} and outbox.depth() == 0
    assert contract.packages[(DEVICE_ID, squatted)] == "f" * 64
    assert loop.conflicts == 1 and contract.heartbeats[-1]["health"]["sync_conflicts"] == 1
    assert "tinylcm_sync_conflicts_total 1.0\n" in prometheus(loop.counters())


def test_an_acknowledgement_naming_another_device_or_other_content_deletes_nothing(
    server_url: str, contract: ContractState, outbox: Outbox, tmp_path: Path
) -> None:
    seqs = _produce(outbox, 5)
    first = _next_id(outbox)
    contract.acks = [{"device_id": "dev-2"}, {"sha256": "0" * 64}]
    loop = SyncLoop(outbox, sync_settings(server_url, tmp_path))
    assert _sync(loop) == 5
    assert _puts(contract) == [(first, 201), (f"{first}.r1", 201), (f"{first}.r2", 201)]
    assert loop.conflicts == 2 and outbox.depth() == 0
    _assert_exactly_once(contract, seqs)  # the copies sent again are refused by the import, not counted twice
    assert contract.rejected == {(DEVICE_ID, f"{first}.r1"), (DEVICE_ID, f"{first}.r2")}


def test_a_lasting_conflict_ends_the_round_and_the_records_wait_under_a_fresh_id(
    server_url: str, contract: ContractState, outbox: Outbox, tmp_path: Path
) -> None:
    seqs = _produce(outbox, 3)
    squatted = _next_id(outbox)
    taken = [squatted] + [f"{squatted}.r{n}" for n in range(1, MAX_RENEWALS)]
    contract.packages.update({(DEVICE_ID, pid): "f" * 64 for pid in taken})
    settings = sync_settings(server_url, tmp_path)
    loop = SyncLoop(outbox, settings)
    with pytest.raises(PackageConflictError, match="kept"):
        _sync(loop)
    assert [pid for pid, _ in _puts(contract)] == taken and loop.conflicts == MAX_RENEWALS
    assert outbox.depth() == 3 and contract.seqs == set()
    flight = outbox.backlog.in_flight()
    assert flight is not None and flight["package_id"] == f"{squatted}.r{MAX_RENEWALS}"
    again = SyncLoop(outbox, settings)  # the next round, or a restart: the persisted fresh id goes first
    assert _sync(again) == 3 and again.conflicts == 0
    assert _puts(contract)[-1] == (f"{squatted}.r{MAX_RENEWALS}", 201)
    _assert_exactly_once(contract, seqs)


def test_faults_on_the_way_are_retried_without_duplicates(
    server_url: str, contract: ContractState, outbox: Outbox, tmp_path: Path
) -> None:
    seqs = _produce(outbox, 100)
    contract.fault_paths = "/api/v1/sync/"
    contract.faults = [Fault(drop=True), Fault(503, "0"), Fault(500), Fault(429, "0"), Fault(drop=True)]
    assert _sync(SyncLoop(outbox, sync_settings(server_url, tmp_path, max_bytes=8192))) == 100
    _assert_exactly_once(contract, seqs)


def test_heartbeats_report_the_outbox_and_hand_labels_over_once(
    server_url: str, contract: ContractState, outbox: Outbox, tmp_path: Path
) -> None:
    outbox.append("prediction", {"i": 1})
    outbox.flush()
    contract.labels = [{"id": 4, "drift_event_id": 9, "seq": 3, "label": "seven"}]
    received: list[Any] = []
    desired: list[Any] = []
    loop = SyncLoop(outbox, sync_settings(server_url, tmp_path), status=lambda: {"model_version": "1.0"},
                    on_labels=received.extend, on_desired=desired.append)

    async def beat_twice() -> None:
        async with loop.client:
            await loop.heartbeat()
            await loop.heartbeat()

    asyncio.run(beat_twice())
    assert received == [{"id": 4, "drift_event_id": 9, "seq": 3, "label": "seven"}]
    assert desired == [{"bundle_version": "2"}] * 2
    first, second = contract.heartbeats
    assert first["model_version"] == "1.0" and first["outbox_depth"] == 1 and first["evictions"] == 0
    assert first["acked_labels"] == [] and second["acked_labels"] == [4]
    assert {"outbox_dropped", "outbox_rejected", "outbox_bytes"} <= first["health"].keys()


def test_the_service_thread_syncs_in_the_background(
    server_url: str, contract: ContractState, outbox: Outbox, tmp_path: Path
) -> None:
    service = SyncService(outbox, sync_settings(server_url, tmp_path)).start()
    try:
        seqs = _produce(outbox, 50)
        service.trigger()
        wait_until(lambda: outbox.depth() == 0, 60, "the outbox to empty", interval=0.05)
    finally:
        service.close()
    _assert_exactly_once(contract, seqs)
    assert contract.heartbeats


def test_the_packer_rebuilds_the_package_in_flight_first(outbox: Outbox) -> None:
    _produce(outbox, 30)
    first = Packer(outbox.backlog, "dev-9").next_package()
    outbox.append("log", {"message": "newer"})
    outbox.flush()
    again = Packer(outbox.backlog, "dev-9").next_package()
    assert first is not None and again is not None
    assert (again.package_id, again.sha256) == (first.package_id, first.sha256)


def test_a_small_lone_record_refused_as_too_large_is_kept_for_later(
    server_url: str, contract: ContractState, outbox: Outbox, tmp_path: Path
) -> None:
    seq = outbox.append("log", {"message": "small"})
    outbox.flush()
    contract.fault_paths = "/api/v1/sync/"
    contract.faults = [Fault(413)]
    loop = SyncLoop(outbox, sync_settings(server_url, tmp_path))
    try:
        _sync(loop)
    except ServerUnavailableError:
        pass
    else:
        raise AssertionError("a 413 for a tiny package must end the round, not drop the record")
    assert outbox.depth() == 1 and outbox.stats()["rejected"] == 0
    assert _sync(loop) == 1 and contract.seqs == {seq}


def test_settings_come_from_the_device_configuration(tmp_path: Path) -> None:
    from device.config import parse_config
    from device.outbox import outbox_settings_from
    from device.sync import sync_settings_from

    assert sync_settings_from(parse_config({})) is None  # no server: stay offline
    config = parse_config({"device": {"data_dir": str(tmp_path), "name": "pi-7"},
                           "sync": {"server_url": "https://fleet.example", "timeout_s": 5, "package_max_bytes": 65536},
                           "outbox": {"max_mb": 12, "image_max_side": 64, "jpeg_quality": 70}})
    settings = sync_settings_from(config)
    assert settings is not None and settings.device_name == "pi-7"
    assert settings.identity_path == str(tmp_path / "state" / "sync_identity.json")
    assert (settings.client.read_timeout_s, settings.client.connect_timeout_s) == (5, 5)
    assert settings.pack.max_bytes == 65536 and settings.pack.images.max_side == 64
    assert outbox_settings_from(config.outbox).max_mb == 12


def test_a_server_outage_is_said_once_and_its_end_once(
    outbox: Outbox, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A device offline for hours must not log a warning every round."""
    import logging

    loop = SyncLoop(outbox, sync_settings("http://127.0.0.1:9", tmp_path))
    outcomes: list[Exception | None] = [ServerUnavailableError("down", 503)] * 4 + [None, None]
    outcomes += [ServerUnavailableError("down again", 503)] * 2 + [None]
    stop = asyncio.Event()

    async def sync() -> None:
        outcome = outcomes.pop(0)
        if not outcomes:
            stop.set()
        if outcome is not None:
            raise outcome

    caplog.set_level(logging.DEBUG, logger="device.sync.loop")
    asyncio.run(loop._every(stop, 0, sync))
    said = [(r.levelno, r.getMessage().split(":")[0]) for r in caplog.records
            if r.name == "device.sync.loop" and r.levelno >= logging.INFO]
    assert said == [(logging.WARNING, "sync failed"), (logging.INFO, "sync works again"),
                    (logging.WARNING, "sync failed"), (logging.INFO, "sync works again")]
