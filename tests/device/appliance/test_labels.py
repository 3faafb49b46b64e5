"""Labels queued by the sync thread reach the adapter in the frame loop, or are refused, each with its outcome."""

from types import SimpleNamespace

import pytest

from device.appliance import labels as labels_module
from device.appliance.labels import LabelInbox
from tests.device.appliance.fakes import FakeOutbox, fake_runner


class FakeAdapter:
    def __init__(self) -> None:
        self.applied: list[tuple[int, str]] = []

    def apply_label(self, seq: int, label: str, vector: object) -> list[dict]:
        self.applied.append((seq, label))
        return [{"action": "validated_label", "seqs": [seq]}]


@pytest.fixture
def read_record(monkeypatch):
    """`read_record` takes labels whose `vector` is set, refuses the others as "bad_vector"."""

    def read(label, bundle):
        if label.get("vector") is None:
            return "bad_vector"
        return SimpleNamespace(seq=label["frame_seq"], label=label["label"], vector=label["vector"])

    monkeypatch.setattr(labels_module, "read_record", read)


def test_labels_wait_in_the_queue_until_the_frame_loop_applies_them(read_record) -> None:
    adapter, outbox, scored = FakeAdapter(), FakeOutbox(), []
    runner = fake_runner("2.0.0", adapter=adapter)
    inbox = LabelInbox(runner, outbox, scored.append)
    inbox.put([{"id": 1, "frame_seq": 40, "label": "7", "vector": [1.0]},
               {"id": 2, "frame_seq": 41, "label": "8", "vector": None}])
    assert not inbox.empty() and adapter.applied == [] and outbox.records == []
    inbox.apply()
    assert inbox.empty() and adapter.applied == [(40, "7")]
    events = outbox.of("adaptation")
    assert [e["action"] for e in events] == ["validated_label", "label_rejected"]
    assert {e["model_version"] for e in events} == {"2.0.0"} and events[1]["reason"] == "bad_vector"
    assert [label["id"] for label in scored] == [1, 2] and runner.pipeline.noticed == 2


def test_labels_without_an_adapter_or_a_frame_are_dropped_without_an_outcome(read_record) -> None:
    outbox, scored = FakeOutbox(), []
    inbox = LabelInbox(fake_runner(adapter=None), outbox, scored.append)
    inbox.put([{"id": 1, "frame_seq": 40, "label": "7", "vector": [1.0]}])
    inbox.apply()
    adapter = FakeAdapter()
    inbox = LabelInbox(fake_runner(adapter=adapter), outbox, scored.append)
    inbox.put([{"id": 2, "frame_seq": None, "label": "7", "vector": [1.0]}])
    inbox.apply()
    assert inbox.empty() and outbox.records == [] and scored == [] and adapter.applied == []
