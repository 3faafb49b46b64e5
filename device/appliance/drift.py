"""Label-based drift: validated labels say whether the running model's predictions were right."""

from __future__ import annotations

import logging
from typing import Any

from device.outbox import Outbox
from device.runner import Runner, alarm_record

log = logging.getLogger(__name__)


class LabelDrift:
    """Feeds the label-based detectors (`accuracy`) of the runner's current pipeline; their alarms go to `outbox`."""

    def __init__(self, runner: Runner, outbox: Outbox) -> None:
        self.runner = runner
        self.outbox = outbox

    def score(self, label: dict[str, Any]) -> None:
        """Compare `label` with this model's prediction for its frame. Labels of another model's predictions,
        or without one, say nothing."""
        monitor, version = self.runner.pipeline.monitor, self.runner.pipeline.bundle.version
        predicted, frame_seq = label.get("predicted"), int(label["frame_seq"])
        if monitor is None or not isinstance(predicted, str) or label.get("model_version") != version:
            return
        for signal_ in monitor.update_label(predicted == str(label["label"]), frame_seq):
            log.warning("drift: %s %.2f > %.2f on validated labels", signal_.detector, signal_.statistic,
                        signal_.threshold)
            self.runner.stats.drift_events += 1
            self.outbox.append("drift_event", {**alarm_record(signal_), "frame_seq": frame_seq, "label": predicted,
                                               "model_version": version})
