"""Operator labels: the sync thread queues them, the frame loop hands them to the adapter (or refuses them).

Only the frame loop touches the adapter; the queue is the one thing the two threads share.
"""

from __future__ import annotations

import logging
import queue
from collections.abc import Callable
from typing import Any

from device.adapt.labels import read_record, refusal
from device.outbox import Outbox
from device.runner import Runner

log = logging.getLogger(__name__)


class LabelInbox:
    """`put` (sync thread) queues validated labels; `apply` (frame loop) applies them to the runner's pipeline.

    Every label gets its outcome in the outbox (an adaptation or a refusal), then goes to `scored`.
    """

    def __init__(self, runner: Runner, outbox: Outbox, scored: Callable[[dict[str, Any]], None]) -> None:
        self.runner = runner
        self.outbox = outbox
        self.scored = scored
        self._queue: queue.SimpleQueue[dict[str, Any]] = queue.SimpleQueue()

    def put(self, labels: list[dict[str, Any]]) -> None:
        for label in labels:
            self._queue.put(label)

    def empty(self) -> bool:
        return self._queue.empty()

    def apply(self) -> None:
        """Hand the labels that arrived since the last frame to the adapter."""
        while not self._queue.empty():
            self._apply(self._queue.get_nowait())

    def _apply(self, label: dict[str, Any]) -> None:
        pipeline = self.runner.pipeline
        if pipeline.adapter is None or label.get("frame_seq") is None:
            log.warning("validated label %s cannot be applied here", label.get("id"))
            return
        taken = read_record(label, pipeline.bundle)  # another model's frame, a forbidden class: refused
        if isinstance(taken, str):
            events = [refusal(label, taken)]
        else:
            events = pipeline.adapter.apply_label(taken.seq, taken.label, taken.vector)
        for event in events:
            self.outbox.append("adaptation", {**event, "model_version": pipeline.bundle.version})
        pipeline.notice_classes()
        self.scored(label)
