from typing import Any

import numpy as np
import pytest

from device.adapt import Probation
from device.knn import Snapshot

SNAPSHOT = Snapshot(np.zeros((1, 2), np.float32), np.array(["a"]))


def probation() -> Probation:
    return Probation(window=4, length=3, max_confidence_drop=0.2, max_agreement_drop=0.2, max_growth=1.5)


def named(confidence: float, agreement: float, frames: float) -> dict[str, float]:
    """The keys of a span's health about its frames voted to a named class."""
    return {"named_confidence": confidence, "named_agreement": agreement, "named": frames}


def watched(frames: list[tuple[float, float, bool] | tuple[float, float, bool, bool]]) -> str | None:
    """The verdict after a baseline of four frames voted to a named class with 0.9; a frame is (confidence,
    agreement, flagged[, voted to a named class])."""
    p = probation()
    for _ in range(4):
        p.record(0.9, 0.9, True, drifting=True)
    p.record(0.1, 0.1, False, drifting=False)  # outside the drift: not in the baseline
    p.start(SNAPSHOT, [{"label": "x"}])
    for confidence, agreement, flagged, *vote in frames:
        assert not p.done
        p.record(confidence, agreement, flagged, drifting=True, named=vote[0] if vote else True)
    assert p.done
    return p.verdict()


def test_baseline_is_a_window_over_drifting_frames():
    p = probation()
    assert p.baseline()["frames"] == 0
    for value in (0.1, 0.2, 0.3, 0.4, 0.5):
        p.record(value, 1.0, value > 0.25, drifting=True)
    p.record(0.0, 0.0, True, drifting=False)
    assert p.baseline() == pytest.approx(
        {"confidence": 0.35, "agreement": 1.0, "inflow": 0.75, "frames": 4, **named(0.35, 1.0, 4)}
    )


@pytest.mark.parametrize(
    ("frames", "verdict"),
    [
        ([(0.8, 0.8, False)] * 3, None),
        ([(0.65, 0.9, True)] * 3, "confidence_collapse"),
        ([(0.9, 0.6, True)] * 3, "agreement_collapse"),
        ([(0.75, 0.75, True)] * 3, None),  # dropped by 0.15 only, inflow not above the baseline
        # a frame voted to a pseudo-label with little confidence, beside confident named votes: no collapse
        # (over every frame the confidence fell from 0.9 to 0.67)
        ([(0.85, 0.85, True), (0.3, 0.3, True, False), (0.85, 0.85, True)], None),
        # named votes collapsing, hidden over every frame by a confident pseudo-label vote (0.73): rolled back
        ([(0.6, 0.9, True), (1.0, 1.0, True, False), (0.6, 0.9, True)], "confidence_collapse"),
        ([(0.9, 0.6, True), (1.0, 1.0, True, False), (0.9, 0.6, True)], "agreement_collapse"),
        # most frames voted to pseudo-labels: every frame is judged, not the one named vote
        ([(0.9, 0.9, True), (0.5, 0.9, True, False), (0.5, 0.9, True, False)], "confidence_collapse"),
        ([(0.9, 0.9, True), (0.8, 0.8, True, False), (0.8, 0.8, True, False)], None),
    ],
)
def test_verdicts(frames, verdict):
    assert watched(frames) == verdict


@pytest.mark.parametrize(("named_confidence", "verdict"), [(0.85, None), (0.6, "confidence_collapse")])
def test_two_named_frames_of_five_are_judged_apart(named_confidence, verdict):
    """More than a third of the frames voted to a named class: they are judged, not the three frames that went to
    a new pseudo-label with split votes (over every frame the confidence fell from 0.9 to 0.52 or 0.42)."""
    p = Probation(window=5, length=5, max_confidence_drop=0.2, max_agreement_drop=0.2, max_growth=1.5)
    for _ in range(5):
        p.record(0.9, 0.9, True, drifting=True)
    p.start(SNAPSHOT, [{"label": "x"}])
    for _ in range(2):
        p.record(named_confidence, 0.9, True, drifting=True)
    for _ in range(3):
        p.record(0.3, 0.3, True, drifting=True, named=False)
    assert p.done and p.verdict() == verdict


def test_inflow_growth_is_relative_to_the_baseline():
    p = probation()
    for flagged in (True, False, False, False):
        p.record(0.9, 0.9, flagged, drifting=True)  # baseline inflow 0.25
    p.start(SNAPSHOT, [{"label": "x"}])
    for flagged in (True, False, False):
        p.record(0.9, 0.9, flagged, drifting=True)  # 0.33 <= 1.5 x 0.25
    assert p.verdict() is None
    p.record(0.9, 0.9, True, drifting=True)  # 0.5 > 0.375
    assert p.verdict() == "quarantine_growth"


def test_state_round_trips_with_the_watch():
    p = probation()
    for value in (0.5, 0.6):
        p.record(value, 0.7, True, drifting=True)
    p.record(0.2, 0.3, True, drifting=True, named=False)
    p.start(SNAPSHOT, [{"label": "x"}, {"label": "y"}])
    p.record(0.4, 0.4, False, drifting=True)
    p.record(0.8, 0.6, True, drifting=True, named=False)
    other = probation()
    other.load_state(p.to_state(), SNAPSHOT)
    watch = p.watch
    assert watch is not None and other.watch is not None and other.watch.health() == watch.health()
    assert watch.health() == pytest.approx(
        {"confidence": 0.6, "agreement": 0.5, "inflow": 0.5, "frames": 2, **named(0.4, 0.4, 1)}
    )
    assert watch.baseline == pytest.approx(
        {"confidence": 1.3 / 3, "agreement": 1.7 / 3, "inflow": 1.0, "frames": 3, **named(0.55, 0.7, 2)}
    )
    # the window of four has let the first frame go
    assert p.baseline() == pytest.approx(
        {"confidence": 0.5, "agreement": 0.5, "inflow": 0.75, "frames": 4, **named(0.5, 0.55, 2)}
    )
    assert other.watch.baseline == watch.baseline and other.baseline() == pytest.approx(p.baseline())
    assert other.finish().events == [{"label": "x"}, {"label": "y"}]


def test_a_watch_saved_with_one_event_still_loads():
    p = probation()
    p.start(SNAPSHOT, [{"label": "x"}])
    state = p.to_state()
    state["watch"]["event"] = state["watch"].pop("events")[0]  # as saved before a watch held several
    other = probation()
    other.load_state(state, SNAPSHOT)
    assert other.watch is not None and other.watch.events == [{"label": "x"}]


def test_state_saved_before_named_frames_were_counted_apart_loads_with_every_frame_named():
    """Rows of three and a watch without the named sums, as saved before: judged as they were then."""
    baseline = {"confidence": 0.9, "agreement": 0.9, "inflow": 1.0, "frames": 4.0}
    old: dict[str, Any] = {
        "recent": [[0.9, 0.9, 1.0], [0.8, 0.7, 0.0]],
        "watch": {
            "events": [{"label": "x"}],
            "baseline": baseline,
            "confidence": 1.3,
            "agreement": 1.2,
            "inflow": 2.0,
            "frames": 2,
        },
    }
    p = probation()
    p.load_state(old, SNAPSHOT)
    assert p.baseline() == pytest.approx(
        {"confidence": 0.85, "agreement": 0.8, "inflow": 0.5, "frames": 2, **named(0.85, 0.8, 2)}
    )
    assert p.watch is not None and p.watch.health() == pytest.approx(
        {"confidence": 0.65, "agreement": 0.6, "inflow": 1.0, "frames": 2, **named(0.65, 0.6, 2)}
    )
    assert p.watch.baseline == {**baseline, **named(0.9, 0.9, 4.0)}
    p.record(0.6, 0.6, False, drifting=True)
    assert p.done and p.verdict() == "confidence_collapse"  # 0.9 -> 0.63 over the three frames, all named
