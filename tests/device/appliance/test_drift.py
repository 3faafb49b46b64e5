"""Validated labels feed the label-based detectors, only when they judge this model's own prediction."""

from device.appliance.drift import LabelDrift
from device.monitor.monitor import DriftSignal
from tests.device.appliance.fakes import FakeOutbox, fake_runner


class FakeMonitor:
    """Alarms on the third wrong prediction it hears of."""

    def __init__(self) -> None:
        self.heard: list[tuple[bool, int]] = []

    def update_label(self, correct: bool, seq: int) -> list[DriftSignal]:
        self.heard.append((correct, seq))
        wrong = sum(not c for c, _ in self.heard)
        return [DriftSignal("accuracy", 5.5, 5.0, seq)] if not correct and wrong == 3 else []


def _label(seq: int, truth: str, predicted: str | None, version: str | None = "1.0.0") -> dict:
    return {"id": seq, "frame_seq": seq, "label": truth, "predicted": predicted, "model_version": version}


def test_only_this_models_predictions_are_scored() -> None:
    monitor = FakeMonitor()
    drift = LabelDrift(fake_runner("1.0.0", monitor=monitor), FakeOutbox())
    for label in (_label(1, "3", "3", "0.9.0"), _label(2, "3", None), _label(3, "3", "3", None)):
        drift.score(label)
    assert monitor.heard == []
    drift.score(_label(4, "3", "3"))
    drift.score(_label(5, "3", "8"))
    assert monitor.heard == [(True, 4), (False, 5)]


def test_an_alarm_is_counted_and_goes_to_the_outbox_with_the_frame() -> None:
    runner, outbox = fake_runner("1.0.0", monitor=FakeMonitor()), FakeOutbox()
    drift = LabelDrift(runner, outbox)
    for seq in range(10, 14):
        drift.score(_label(seq, "7", "1"))
    assert runner.stats.drift_events == 1
    assert outbox.of("drift_event") == [{"detector": "accuracy", "statistic": 5.5, "threshold": 5.0,
                                         "frame_seq": 12, "label": "1", "model_version": "1.0.0"}]


def test_without_a_monitor_nothing_is_scored() -> None:
    outbox = FakeOutbox()
    LabelDrift(fake_runner(monitor=None), outbox).score(_label(1, "7", "1"))
    assert outbox.records == []
