"""The appliance's wiring: validated labels cross from the sync thread to the adapter in the frame loop."""

import threading

import numpy as np

from device.appliance import Appliance
from device.config import parse_config
from tests.utils.bundles import FACTORY


def _appliance(tmp_path) -> Appliance:
    config = parse_config({
        "device": {"data_dir": str(tmp_path), "health_port": 0},
        "camera": {"source": "digits", "fps": 100, "drift": "unseen@40", "seed": 3},
        "feature_extractor": {"bundle": str(FACTORY)},
        "sync": {"server_url": ""},
    })
    return Appliance(config)


def test_operator_labels_reach_the_adapter_and_the_outbox(tmp_path) -> None:
    appliance = _appliance(tmp_path)
    vector = np.full(appliance.pipeline.classifier.dim, 3.0, dtype=np.float32).tolist()
    appliance._queue_labels([{"id": 1, "frame_seq": 12345, "label": "7", "vector": vector},
                             {"id": 2, "frame_seq": None, "label": "8", "vector": None}])
    appliance.apply_labels()
    assert appliance.labels.empty()
    assert "7" in appliance.pipeline.classifier.labels.tolist()
    assert appliance.outbox.flush(10)
    events = [r["data"] for r in appliance.outbox.records("adaptation")]
    assert [e["action"] for e in events] == ["validated_label"] and events[0]["label"] == "7"
    appliance.outbox.close()


def test_run_stops_on_request_and_saves_state(tmp_path) -> None:
    appliance = _appliance(tmp_path)
    stop = threading.Event()
    timer = threading.Timer(3.0, stop.set)
    timer.start()
    try:
        assert appliance.run(stop) == 0
    finally:
        timer.cancel()
    assert appliance.runner.stats.frames > 0
    assert (tmp_path / "state" / "digits-1.0.0" / "frames.json").exists()
    health = appliance.snapshot()  # no provisioning file: it says so, and runs offline
    assert (health["provisioning"], health["provisioning_reason"]) == ("error", "not_provisioned")
