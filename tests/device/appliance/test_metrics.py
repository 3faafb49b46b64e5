"""Metric records: the gate figures and the mean confidence since the last record, when one is due."""

import time

from device.appliance import metrics as metrics_module
from device.appliance.metrics import MetricsRecorder
from tests.device.appliance.fakes import FakeOutbox

FIGURES = {"model_version": "1.0.0", "frames": 7, "latency_ms_p95": 9.5, "drift_alarm_rate": 0.0,
           "error_rate": 0.0, "skipped": 0}


def test_a_record_every_interval_with_the_mean_confidence(monkeypatch) -> None:
    outbox = FakeOutbox()
    recorder = MetricsRecorder(outbox, lambda: FIGURES)
    recorder.observe(0.5, time.monotonic())
    assert outbox.records == []  # not due for another 30 s
    recorder.observe(1.0, time.monotonic() + metrics_module.METRICS_EVERY_S + 1)
    (record,) = outbox.of("metric")
    assert record == {"model_version": "1.0.0", "metrics": {
        "latency_ms_p95": 9.5, "drift_alarm_rate": 0.0, "error_rate": 0.0, "frames": 7, "confidence": 0.75}}


def test_the_mean_restarts_after_each_record_and_is_left_out_without_frames(monkeypatch) -> None:
    monkeypatch.setattr(metrics_module, "METRICS_EVERY_S", 0.0)
    outbox = FakeOutbox()
    recorder = MetricsRecorder(outbox, lambda: FIGURES)
    recorder.observe(0.2, time.monotonic())
    recorder.observe(0.4, time.monotonic())
    recorder.record()
    assert [r["metrics"].get("confidence") for r in outbox.of("metric")] == [0.2, 0.4, None]
