"""Nothing lost silently, nothing twice: the real device process syncing to the real server through faults.

After each fault the device drains its outbox; then every record it produced is on the server exactly once
(by `(device_id, seq)`) or counted: evicted, rejected, dropped on a full disk, or lost in a crash (kill -9
with records still queued), exactly; no seq is handed out twice; evictions and crash losses reached the
server in a heartbeat; and frames kept coming while the fault lasted.
"""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.e2e.device_run import Accounting, Device, account
from tests.e2e.proxy import Fault, FaultProxy
from tests.e2e.server_proc import ServerDatabase, ServerProcess

pytestmark = pytest.mark.slow
NewDevice = Callable[[], Device]
Record = Callable[[Accounting], None]


def _check(result: Accounting, record_result: Record) -> None:
    record_result(result)
    assert result.duplicated == 0 and result.lost == 0 and result.reissued == 0, result.line()
    assert result.balances(), result.line()  # produced = delivered + evicted + rejected + lost in crash (+ full disk)
    assert result.reported_evictions == result.evicted, result.line()  # the last heartbeat said so
    assert result.reported_lost_in_crash == result.lost_in_crash, result.line()


def test_baseline_everything_arrives_once(new_device: NewDevice, server_db: ServerDatabase,
                                          record_result: Record) -> None:
    device = new_device()
    assert device.run(frames=120, pack_max_bytes=16384) == 0
    assert device.view().done
    _check(account("baseline (no fault)", device, server_db), record_result)


def test_fault_1_a_long_network_outage_fills_the_outbox_which_evicts_by_priority(
    new_device: NewDevice, proxy: FaultProxy, server_db: ServerDatabase, record_result: Record
) -> None:
    device = new_device()
    proxy.down = True
    proc = device.start(frames=400, fps=100, max_mb=0.03, drift="unseen@100")
    device.wait_for(lambda v: v.produced_all, proc=proc)  # every frame processed while offline
    proxy.down = False
    assert proc.wait(120) == 0
    device.note_outbox()
    result = account("1 network down (outbox full)", device, server_db)
    _check(result, record_result)
    appended = device.view().appended
    kinds = server_db.kinds(device.device_id)
    assert result.evicted > 0 and result.reported_evictions == result.evicted
    assert kinds["drift_event"] == appended["drift_event"] > 0  # drift events (with images) survived
    assert kinds.get("adaptation", 0) == appended["adaptation"]
    assert kinds["prediction"] < appended["prediction"]  # the lowest priority paid for it


def test_fault_2_the_server_is_killed_and_restarted_during_uploads(
    new_device: NewDevice, server: ServerProcess, server_db: ServerDatabase, record_result: Record
) -> None:
    device = new_device()
    proc = device.start(frames=400, fps=60, pack_max_bytes=4096, sync_interval=0.3)
    kills = 0
    try:
        for _ in range(2):
            before = len(device.view().delivered)
            device.wait_for(lambda v, n=before: len(v.delivered) > n, proc=proc)  # uploads are flowing
            server.kill()
            kills += 1
            at = max(device.view().frames, default=0)
            device.wait_for(lambda v, f=at: v.produced_all or max(v.frames, default=0) >= f + 20, proc=proc)
            server.start()  # meanwhile inference went on (above), uploads failed and were retried
    finally:
        server.ensure_running()
    assert proc.wait(120) == 0
    device.note_outbox()
    _check(account("2 server killed+restarted", device, server_db, server_kills=kills), record_result)


def test_fault_3_the_device_is_killed_while_packing_uploading_and_deleting(
    new_device: NewDevice, server_db: ServerDatabase, record_result: Record
) -> None:
    device = new_device()
    for point in ("packing", "uploading", "deleting"):
        code = device.run(f"--kill-at={point}:5", frames=100, fps=100, pack_max_bytes=4096, sync_interval=0.2)
        assert code == -9, f"the device was not killed while {point}"
        flight = device.in_flight()
        assert flight is not None  # persisted before packing; cleared only with the rows' delete
        on_server = flight["package_id"] in {p["id"] for p in server_db.packages(device.device_id)}
        assert on_server == (point != "packing")  # the next run must resend the very same package
    assert device.run(frames=20, fps=100) == 0  # restart: resumes, rebuilds the package in flight, drains
    assert device.in_flight() is None
    _check(account("3 device kill -9 x3", device, server_db, runs=device.runs), record_result)


def test_fault_3b_the_device_is_killed_with_records_waiting_in_its_queue(
    new_device: NewDevice, server_db: ServerDatabase, record_result: Record
) -> None:
    """With the shipped one-second commit interval a kill -9 always finds records queued: they are lost, and
    the restart counts them, reports them to the server, and never hands their seqs out again."""
    device = new_device()
    for frame in (40, 25):
        code = device.run(f"--kill-at=frame:{frame}", frames=100, fps=50, commit_interval=1.0, sync_interval=0.3)
        assert code == -9, "the device was not killed"
    assert device.run(frames=20, fps=50, commit_interval=1.0) == 0  # counts the second loss, drains
    result = account("3b kill -9, records queued", device, server_db, runs=device.runs)
    _check(result, record_result)
    assert result.lost_in_crash >= 2, result.line()  # at least the frame's own record, twice


def test_fault_4_the_server_answers_500_503_429_and_413(
    new_device: NewDevice, proxy: FaultProxy, server_db: ServerDatabase, record_result: Record
) -> None:
    device = new_device()
    proxy.queue(Fault("answer", status=500), Fault("answer", status=503, retry_after="1"),
                Fault("answer", status=429, retry_after="1"), Fault("answer", status=413),
                Fault("answer", status=500), Fault("answer", status=413), Fault("answer", status=503, retry_after="1"))
    assert device.run(frames=150, fps=100, pack_max_bytes=16384) == 0
    assert proxy.pending() == 0
    _check(account("4 HTTP 500/503/429/413", device, server_db, injected=sum(proxy.injected.values())),
           record_result)


def test_flaky_link_drops_stalls_delays_and_truncates(
    new_device: NewDevice, proxy: FaultProxy, server_db: ServerDatabase, record_result: Record
) -> None:
    device = new_device()
    proxy.queue(Fault("drop_request"), Fault("drop_response"), Fault("truncate"), Fault("stall", seconds=2.5),
                Fault("delay", seconds=0.5), Fault("drop_response"), Fault("truncate"))
    assert device.run(frames=150, fps=100, pack_max_bytes=8192, read_timeout=1.5) == 0
    assert proxy.pending() == 0
    _check(account("link drop/stall/delay/trunc", device, server_db, injected=sum(proxy.injected.values())),
           record_result)


def test_fault_5_the_disk_fills_up_and_the_outbox_degrades_by_policy(
    new_device: NewDevice, proxy: FaultProxy, server_db: ServerDatabase, record_result: Record
) -> None:
    device = new_device()
    device.data_dir.mkdir(parents=True)
    if subprocess.run([*_small_disk(device.data_dir, "64k"), "true"], capture_output=True).returncode:
        pytest.skip("this machine cannot mount a tmpfs in a user namespace (unshare), so no small disk")
    proxy.down = True  # nothing drains while the disk fills
    proc = device.start(wrapper=_small_disk(device.data_dir, "3m"), frames=500, fps=100, image_kb=8, max_mb=64)
    device.wait_for(lambda v: v.produced_all, proc=proc)  # inference went on through the full disk
    proxy.down = False
    assert proc.wait(120) == 0
    result = account("5 disk full (3 MiB disk)", device, server_db)
    health = server_db.device(device.device_id)["health"]
    result.extra["dropped"] = health["outbox_dropped"]
    _check(result, record_result)
    appended, kinds = device.view().appended, server_db.kinds(device.device_id)
    assert result.frames == 500 and result.evicted > 0 and result.reported_evictions == result.evicted
    assert kinds["drift_event"] == appended["drift_event"] > 0  # the highest priority survived
    assert health["outbox_bound_bytes"] < 3 * 2**20  # the bound came down to the disk


def _small_disk(directory: Path, size: str) -> list[str]:
    """A command prefix running the rest with a `size` tmpfs mounted on `directory` (private mount namespace)."""
    script = 'mount -t tmpfs -o size=$1 tmpfs "$0" && shift && exec "$@"'
    return ["unshare", "--user", "--map-root-user", "--mount", "sh", "-c", script, str(directory), size]


def test_fault_6_the_device_clock_jumps_backwards_and_forwards(
    new_device: NewDevice, server_db: ServerDatabase, record_result: Record
) -> None:
    device = new_device()
    assert device.run("--clock-jumps", frames=160, fps=100, pack_max_bytes=8192) == 0
    result = account("6 clock jumps -3d/+400d/-2h", device, server_db)
    _check(result, record_result)
    with server_db.engine.connect() as conn:
        from sqlalchemy import text

        spread = conn.execute(text("SELECT max(ts) - min(ts) FROM records WHERE device_id = :d"),
                              {"d": device.device_id}).scalar_one()
    assert spread.days >= 400  # the jumps really reached the records


def test_an_enrollment_whose_answer_is_lost_is_asked_again_with_the_same_key(
    server: ServerProcess, server_db: ServerDatabase, tmp_path: Path
) -> None:
    """The server spends the token, the device never hears back: the device is not bricked, and not doubled."""
    from server.identity import token_hash

    enroll = FaultProxy(server.port, path_prefix="/api/v1/devices/enroll").start()
    try:
        enroll.queue(Fault("drop_response"))
        token = server_db.enrollment_token()
        device = Device(tmp_path, f"http://127.0.0.1:{enroll.port}", token)
        assert device.run(frames=60, fps=20, sync_interval=0.2) == 0
        assert enroll.pending() == 0  # the answer really was lost once
    finally:
        enroll.close()
    spent = server_db.rows("SELECT device_id FROM enrollment_tokens WHERE token_hash = :h", h=token_hash(token))
    assert [row["device_id"] for row in spent] == [device.device_id]
    assert server_db.rows("SELECT count(*) AS n FROM devices WHERE id = :d", d=device.device_id)[0]["n"] == 1
    assert server_db.wait_imported(device.device_id)  # and it synced with the identity it got the second time
