"""The runner gives the same results whether frame N is observed inline or while frame N+1 runs."""

import numpy as np
import pytest
from PIL import Image

from device.capture import open_source
from device.capture.base import Frame
from device.errors import FrameError
from device.outbox import Outbox
from device.pipeline.pipeline import Pipeline
from device.runner import Runner
from tests.utils.bundles import FACTORY


def _run(tmp_path, name: str, overlap: bool, frames: list[Frame]) -> tuple[list, list, Runner]:
    outbox = Outbox(tmp_path / f"{name}.db")
    runner = Runner(Pipeline.from_bundle(FACTORY), outbox)
    results = [(r.seq, r.label, tuple(r.drift)) for r in runner.run(frames, overlap=overlap)]
    assert outbox.flush(30)
    records = [(r["kind"], r["data"].get("frame_seq"), r["data"].get("detector") or r["data"].get("action"))
               for r in outbox.records()]
    outbox.close()
    return results, records, runner


def test_overlapped_observation_changes_nothing(tmp_path) -> None:
    frames = list(open_source("digits", seed=4, limit=700, drift="unseen@300"))
    frames[50] = Frame(np.zeros((16, 16, 3), np.uint8), origin="too-small")  # a bad frame mid-stream
    inline, inline_records, a = _run(tmp_path, "inline", False, frames)
    overlapped, overlapped_records, b = _run(tmp_path, "overlap", True, frames)
    assert overlapped == inline
    assert overlapped_records == inline_records
    assert a.stats.summary() | {"latency_ms_p50": 0, "latency_ms_p95": 0} == \
        b.stats.summary() | {"latency_ms_p50": 0, "latency_ms_p95": 0}
    assert a.stats.skipped == 1 and a.stats.drift_events > 0 and a.stats.adaptations > 0



@pytest.mark.parametrize("overlap", [False, True], ids=["sequential", "overlapped"])
def test_a_frame_the_decision_refuses_is_skipped_and_counted(overlap: bool) -> None:
    """Non-finite features surface in `classify`, which the overlapped loop runs on its worker thread."""
    pipeline = Pipeline.from_bundle(FACTORY)
    classify = pipeline.classify

    def refuse_frame_5(frame, seq, probs, features, started):
        if seq == 5:
            raise FrameError("frame 5: the model gave non-finite features")
        return classify(frame, seq, probs, features, started)

    pipeline.classify = refuse_frame_5  # type: ignore[method-assign]
    runner = Runner(pipeline)
    seqs = [r.seq for r in runner.run(open_source("digits", seed=2, limit=12), overlap=overlap)]
    assert seqs == [0, 1, 2, 3, 4, 6, 7, 8, 9, 10, 11]
    assert runner.stats.skipped == 1 and runner.stats.frames == 11

def test_overlapped_run_stops_after_the_frame_in_progress(tmp_path) -> None:
    runner = Runner(Pipeline.from_bundle(FACTORY))
    seen = []
    for result in runner.run(open_source("digits", seed=1), overlap=True):
        seen.append(result.seq)
        if result.seq == 9:
            runner.stop.set()
    assert seen[:10] == list(range(10)) and len(seen) <= 12


def test_drift_event_records_carry_evidence(tmp_path) -> None:
    frames = list(open_source("digits", seed=0, limit=360, drift="unseen@300"))
    outbox = Outbox(tmp_path / "o.db")
    runner = Runner(Pipeline.from_bundle(FACTORY), outbox)
    list(runner.run(frames))
    assert outbox.flush(30)
    events = outbox.records("drift_event")
    assert events
    data = events[0]["data"]
    assert {"detector", "statistic", "threshold", "frame_seq", "vector", "model_version", "label"} <= set(data)
    assert data["frame_seq"] >= 300 and data["statistic"] > data["threshold"] > 0
    assert len(data["vector"]) == runner.pipeline.classifier.dim and data["model_version"] == "1.0.0"
    jpeg = outbox.blobs.read(events[0]["blob"])
    assert Image.open(__import__("io").BytesIO(jpeg)).format == "JPEG" and len(jpeg) <= 32 * 1024
    outbox.close()
