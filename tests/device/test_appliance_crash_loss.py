"""The appliance reports what crashes lost: in /healthz, in /metrics and in the heartbeat's health."""

from pathlib import Path

from device.appliance import Appliance
from device.config import parse_config
from device.health import prometheus
from device.outbox.issued import IssuedMark, boot_id
from device.outbox.records import Entry
from device.outbox.store import RecordStore
from tests.utils.bundles import FACTORY


def test_records_a_kill_left_in_the_queue_are_reported_in_health_metrics_and_heartbeat(tmp_path: Path) -> None:
    # What `tinylcm run` leaves when killed in this boot: 10 records committed, 13 handed out, 100 reserved.
    store = RecordStore(tmp_path / "outbox.db")
    with store.transaction():
        store.insert([Entry(seq, "prediction", "t", 0, "{}") for seq in range(1, 11)])
        store.set_meta("reserved", 100)
    store.close()
    IssuedMark(tmp_path / "outbox-issued", boot_id(), 13).close()
    config = parse_config({"device": {"data_dir": str(tmp_path), "health_port": 0},
                           "feature_extractor": {"bundle": str(FACTORY)}, "sync": {"server_url": ""}})
    appliance = Appliance(config)
    try:
        assert appliance.snapshot()["lost_in_crash"] == 3
        assert "tinylcm_lost_in_crash_total 3.0\n" in prometheus(appliance.snapshot())
        assert appliance._sync_status()["health"]["lost_in_crash"] == 3  # what the heartbeat carries
        (report,) = appliance.outbox.records("log")
        assert report["data"]["message"] == "lost in crash: 3 records (seqs 11-13)"
    finally:
        appliance.outbox.close()
