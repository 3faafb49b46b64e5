import numpy as np
import pytest

from device.adapt import Probation
from device.knn import Snapshot

SNAPSHOT = Snapshot(np.zeros((1, 2), np.float32), np.array(["a"]))


def probation() -> Probation:
    return Probation(window=4, length=3, max_confidence_drop=0.2, max_agreement_drop=0.2, max_growth=1.5)


def watched(frames: list[tuple[float, float, bool]]) -> str | None:
    p = probation()
    for _ in range(4):
        p.record(0.9, 0.9, True, drifting=True)
    p.record(0.1, 0.1, False, drifting=False)  # outside the drift: not in the baseline
    p.start(SNAPSHOT, [{"label": "x"}])
    for confidence, agreement, flagged in frames:
        assert not p.done
        p.record(confidence, agreement, flagged, drifting=True)
    assert p.done
    return p.verdict()


def test_baseline_is_a_window_over_drifting_frames():
    p = probation()
    assert p.baseline()["frames"] == 0
    for value in (0.1, 0.2, 0.3, 0.4, 0.5):
        p.record(value, 1.0, value > 0.25, drifting=True)
    p.record(0.0, 0.0, True, drifting=False)
    assert p.baseline() == pytest.approx({"confidence": 0.35, "agreement": 1.0, "inflow": 0.75, "frames": 4})


@pytest.mark.parametrize(
    ("frames", "verdict"),
    [
        ([(0.8, 0.8, False)] * 3, None),
        ([(0.65, 0.9, True)] * 3, "confidence_collapse"),
        ([(0.9, 0.6, True)] * 3, "agreement_collapse"),
        ([(0.75, 0.75, True)] * 3, None),  # dropped by 0.15 only, inflow not above the baseline
    ],
)
def test_verdicts(frames, verdict):
    assert watched(frames) == verdict


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
    p.start(SNAPSHOT, [{"label": "x"}, {"label": "y"}])
    p.record(0.4, 0.4, False, drifting=True)
    other = probation()
    other.load_state(p.to_state(), SNAPSHOT)
    assert other.watch is not None and other.watch.health() == p.watch.health()
    assert other.watch.baseline == p.watch.baseline and other.baseline() == p.baseline()
    assert other.finish().events == [{"label": "x"}, {"label": "y"}]


def test_a_watch_saved_with_one_event_still_loads():
    p = probation()
    p.start(SNAPSHOT, [{"label": "x"}])
    state = p.to_state()
    state["watch"]["event"] = state["watch"].pop("events")[0]  # as saved before a watch held several
    other = probation()
    other.load_state(state, SNAPSHOT)
    assert other.watch is not None and other.watch.events == [{"label": "x"}]
