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
    appliance.labels.put([{"id": 1, "frame_seq": 12345, "label": "7", "vector": vector},
                             {"id": 2, "frame_seq": None, "label": "8", "vector": None}])
    appliance.labels.apply()
    assert appliance.labels.empty()
    assert "7" in appliance.pipeline.classifier.labels.tolist()
    monitor = appliance.pipeline.monitor
    assert monitor is not None  # the prediction histogram has a bin for the new class from now on
    assert [w.detector._learned for w in monitor.watches if w.input == "label"] == [["7"]]
    assert appliance.outbox.flush(10)
    events = [r["data"] for r in appliance.outbox.records("adaptation")]
    assert [e["action"] for e in events] == ["validated_label"] and events[0]["label"] == "7"
    appliance.outbox.close()



def test_labels_that_contradict_this_models_predictions_raise_the_accuracy_alarm(tmp_path) -> None:
    appliance = _appliance(tmp_path)
    dim = appliance.pipeline.classifier.dim
    vector = np.full(dim, 3.0, dtype=np.float32).tolist()

    def label(i: int, truth: str, predicted: str | None, version: str | None = "1.0.0") -> dict:
        return {"id": i, "frame_seq": 1000 + i, "label": truth, "vector": vector, "predicted": predicted,
                "model_version": version}

    # Right predictions, another model's wrong ones, and labels without a prediction: no alarm.
    appliance.labels.put([label(i, "3", "3") for i in range(20)]
                            + [label(i, "7", "2", "0.9.0") for i in range(20, 40)]
                            + [label(i, "7", None) for i in range(40, 60)])
    appliance.labels.apply()
    assert appliance.outbox.flush(10) and appliance.outbox.records("drift_event") == []
    # The operator says this model got frame after frame wrong: the accuracy CUSUM fires within a few.
    appliance.labels.put([label(i, "7", "1") for i in range(60, 70)])
    appliance.labels.apply()
    assert appliance.outbox.flush(10)
    alarms = [r["data"] for r in appliance.outbox.records("drift_event")]
    assert alarms and {a["detector"] for a in alarms} == {"accuracy"}
    assert 1061 <= alarms[0]["frame_seq"] <= 1066 and alarms[0]["statistic"] > alarms[0]["threshold"]
    assert alarms[0]["label"] == "1" and alarms[0]["model_version"] == "1.0.0"
    assert appliance.pipeline.monitor is not None and appliance.pipeline.monitor.drifting
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


def _flip(current, target) -> None:
    tmp = current.with_name("current.tmp")
    tmp.symlink_to(target)
    tmp.replace(current)


def test_switches_bundle_when_the_updater_flips_current(tmp_path) -> None:
    import shutil

    from tests.utils.bundles import ROOT

    models = tmp_path / "models"
    shutil.copytree(FACTORY, models / "slot-a")
    shutil.copytree(ROOT / "benchmarks" / "fixtures" / "digits-v2", models / "slot-b")
    (models / "current").symlink_to(models / "slot-a")
    config = parse_config({"device": {"data_dir": str(tmp_path), "health_port": 0},
                           "camera": {"source": "digits"}, "feature_extractor": {"bundle": "models/current"}})
    appliance = Appliance(config)
    assert appliance.snapshot()["model_version"] == "1.0.0"
    appliance.runner.stats.latencies.extend([9.0] * 10)
    appliance.runner.stats.alarms.extend([1] * 10)
    appliance.bundle.check(25)
    assert appliance.pipeline.bundle.version == "1.0.0"  # nothing changed: nothing reloaded

    _flip(models / "current", models / "slot-b")
    appliance.bundle.check(50)
    assert appliance.pipeline.bundle.version == "2.0.0" and appliance.runner.pipeline is appliance.pipeline
    health = appliance.snapshot()  # the gate figures are the new model's alone, not the old one's window
    assert (health["drift_alarm_rate"], health["latency_ms_p95"]) == (0.0, 0.0)
    assert (tmp_path / "state" / "digits-1.0.0" / "frames.json").exists()  # the old model's state was kept

    (models / "slot-a" / "model.tflite").write_bytes(b"broken")
    _flip(models / "current", models / "slot-a")
    appliance.bundle.check(75)
    health = appliance.snapshot()
    assert health["model_version"] == "2.0.0" and "model.tflite" in health["bundle_error"]
    appliance.outbox.close()


def test_desired_state_and_update_state_cross_the_state_volume(tmp_path) -> None:
    import json

    appliance = _appliance(tmp_path)
    appliance.connection.on_desired({"bundle_version": "2.0.0", "model": "digits", "target": "digits/2.0.0/bundle.tar"})
    path = tmp_path / "state" / "desired.json"
    desired = json.loads(path.read_text())
    assert desired["target"] == "digits/2.0.0/bundle.tar" and "received_at" in desired
    # The same desired state again (every heartbeat repeats it) is not written again: no fsync per heartbeat.
    path.write_text("{}")
    appliance.connection.on_desired({"bundle_version": "2.0.0", "model": "digits", "target": "digits/2.0.0/bundle.tar"})
    assert path.read_text() == "{}"
    appliance.connection.on_desired({"bundle_version": "1.0.0", "model": "digits", "target": "digits/1.0.0/bundle.tar"})
    assert json.loads(path.read_text())["bundle_version"] == "1.0.0"
    (tmp_path / "state" / "updater.json").write_text(json.dumps({"state": "PROBATION"}))
    report = appliance._sync_status()
    assert report["update_state"] == "PROBATION" and report["model_version"] == "1.0.0"
    assert {"latency_ms_p95", "drift_alarm_rate", "error_rate", "healthy"} <= set(report["health"])
    appliance.outbox.close()


def test_metric_records_carry_the_figures_the_dashboard_charts(tmp_path, monkeypatch) -> None:
    from device.appliance import metrics as metrics_module
    from device.capture import open_source

    monkeypatch.setattr(metrics_module, "METRICS_EVERY_S", 0.0)
    appliance = _appliance(tmp_path)
    source = open_source("digits", seed=3, size=appliance.pipeline.bundle.frame_size, limit=5)
    for result in appliance.runner.run(source):
        appliance.after_frame(result)
    assert appliance.outbox.flush(10)
    records = [r["data"] for r in appliance.outbox.records("metric")]
    assert len(records) == 5
    last = records[-1]
    assert last["model_version"] == "1.0.0"
    assert set(last["metrics"]) == {"latency_ms_p95", "drift_alarm_rate", "error_rate", "frames", "confidence"}
    assert 0.0 < last["metrics"]["confidence"] <= 1.0 and last["metrics"]["frames"] == 5
    appliance.outbox.close()


def test_updater_transitions_reach_the_outbox_once(tmp_path) -> None:
    from device.updater.record import Journal, State, UpdateRecord

    appliance = _appliance(tmp_path)
    journal = Journal(tmp_path / "state" / "updater.json")
    record = UpdateRecord()
    journal.transition(record, State.DOWNLOADING, "desired", version="2.0.0", target="digits/2.0.0/bundle.tar")
    appliance.updates.ship()
    journal.transition(record, State.IDLE, "download_failed")
    appliance.updates.ship()
    appliance.updates.ship()  # nothing new: nothing shipped twice
    appliance.outbox.flush(10)
    logs = [r["data"] for r in appliance.outbox.records("log")]
    assert [log["message"] for log in logs] == ["updater: IDLE -> DOWNLOADING (desired) 2.0.0",
                                                "updater: DOWNLOADING -> IDLE (download_failed) 2.0.0"]
    assert [log["transition"]["seq"] for log in logs] == [1, 2]
    appliance.outbox.close()

    again = _appliance(tmp_path)  # a restart remembers what was shipped
    again.updates.ship()
    again.outbox.flush(10)
    assert len(again.outbox.records("log")) == 2
    again.outbox.close()
