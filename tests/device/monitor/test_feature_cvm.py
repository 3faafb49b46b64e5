import json

import numpy as np
import pytest

from device.monitor.feature_cvm import FeatureCVM
from tests.utils.streams import alarms

CENTRES = np.array([[3.0, 0, 0, 0], [0, 3.0, 0, 0], [0, 0, 3.0, 0]])
READY = 150 + 200 + 10 - 1  # baseline, reference residuals, then a full window: the first frame tested


def stream(seed: int, n: int = 800, at: int = 500, scale: float = 1.0, shift: float = 0.0, runs: bool = False):
    """(vector, label) frames of three classes in 4-d; from `at` the spread within each class is scaled
    by `scale` and the last component shifted by `shift`. `runs`: labels come in runs of ten."""
    rng = np.random.default_rng(seed)
    codes = np.repeat(rng.integers(0, 3, n // 10), 10) if runs else rng.integers(0, 3, n)
    x = CENTRES[codes] + rng.normal(0, 1, (n, 4))
    x[at:] = CENTRES[codes[at:]] + scale * (x[at:] - CENTRES[codes[at:]])
    x[at:, 3] += shift
    return [(v, "abc"[c]) for v, c in zip(x, codes, strict=True)]


def test_exact_alarm_on_a_narrower_shifted_distribution() -> None:
    # a defocus: each class's spread halves and one component moves by 1 σ; then it learns anew
    assert alarms(FeatureCVM(4, threshold=1.5), stream(1, scale=0.5, shift=1.0)) == [509]


def test_exact_alarm_on_a_shift_of_one_component() -> None:
    assert alarms(FeatureCVM(4, threshold=1.5), stream(2, shift=1.5)) == [507]


def test_in_control_stream_is_quiet() -> None:
    assert alarms(FeatureCVM(4, threshold=1.5), stream(3, n=5000, at=5000)) == []


def test_runs_of_one_class_are_not_drift() -> None:
    frames = stream(4, n=3000, at=3000, runs=True)
    assert alarms(FeatureCVM(4, threshold=1.8), frames) == [2766]
    pooled = [(vector, "a") for vector, _ in frames]  # without the classes, every run looks like a shift
    assert len(alarms(FeatureCVM(4, threshold=1.8), pooled)) == 7


def test_nothing_is_tested_before_the_centroids_the_reference_and_a_window_are_learned() -> None:
    detector = FeatureCVM(4, threshold=1e-3)
    statistics = []
    for frame in stream(5, n=400):
        detector.update(frame)
        statistics.append(detector.statistic)
    assert statistics.index(next(s for s in statistics if s > 0)) == READY


def test_frames_of_a_class_unseen_while_learning_are_skipped() -> None:
    frames = stream(6, n=READY + 50)
    detector = FeatureCVM(4, threshold=100.0)
    for frame in frames:
        detector.update(frame)
    before = detector.state()
    detector.update((np.full(4, 50.0), "z"))
    assert detector.state() == before


def test_state_round_trips_through_json_mid_reference_and_mid_window() -> None:
    frames = stream(7, n=700, shift=1.0)
    for cut in (300, READY + 4, 620):
        detector = FeatureCVM(4, threshold=1.5)
        found = alarms(detector, frames[:cut])
        clone = FeatureCVM(4, threshold=1.5)
        clone.restore(json.loads(json.dumps(detector.state())))  # as the monitor saves it
        assert clone.state() == detector.state()
        found_after = alarms(clone, frames[cut:])
        assert found + [cut + i for i in found_after] == alarms(FeatureCVM(4, threshold=1.5), frames)


def test_state_of_another_shape_is_refused() -> None:
    detector = FeatureCVM(3, threshold=1.5)
    for vector, label in stream(8, n=200):
        detector.update((vector[:3], label))
    with pytest.raises(ValueError, match="does not fit dim 4"):
        FeatureCVM(4).restore(detector.state())
    with pytest.raises(ValueError, match="state keys"):
        FeatureCVM(3).restore({"_n": 0})


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"dim": 0}, "dim must be >= 1"),
        ({"dim": 4, "window": 1}, "window must be >= 2"),
        ({"dim": 4, "window": 10, "reference": 5}, r"reference must be >= window \(10\)"),
        ({"dim": 4, "baseline": 0}, "baseline must be >= 1"),
        ({"dim": 4, "threshold": 0}, "threshold must be > 0"),
    ],
)
def test_bad_hyperparameters_rejected(kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        FeatureCVM(**kwargs)


def _fed(frames: list) -> FeatureCVM:
    detector = FeatureCVM(4, threshold=1.5)
    for frame in frames:
        detector.update(frame)
    return detector


def test_the_saved_state_leaves_out_half_learned_centroids() -> None:
    detector = _fed(stream(8, n=100))  # 100 of the 150 baseline frames
    restored = FeatureCVM(4, threshold=1.5)
    restored.restore(json.loads(json.dumps(detector.saved_state())))
    assert restored.state() == FeatureCVM(4, threshold=1.5).state()  # learns them anew


def test_the_saved_state_leaves_out_a_half_learned_reference_which_is_then_learned_from_the_next_frames() -> None:
    frames = stream(9, n=900)
    cut = 150 + 120  # the centroids learned, 120 of the 200 reference residuals
    detector = _fed(frames[:cut])
    saved = json.loads(json.dumps(detector.saved_state()))
    assert saved["_residuals"] == [] and saved["_sums"] == detector.state()["_sums"]
    restored = FeatureCVM(4, threshold=1.5)
    restored.restore(saved)
    for frame in frames[cut:]:
        restored.update(frame)
    # as if the 120 frames of the lost reference had never been seen: same centroids, reference from the next 200
    assert restored.state() == _fed(frames[:150] + frames[cut:]).state()


def test_a_complete_reference_and_window_are_saved_whole() -> None:
    detector = _fed(stream(10, n=READY + 5))
    assert detector.saved_state() == detector.state()
    assert all(type(x) is int for row in detector.state()["_ranks"] for x in row)  # counts, saved as integers


def test_a_float64_reference_saved_by_earlier_code_is_restored_as_float32() -> None:
    detector = _fed(stream(11, n=READY + 5))
    state = detector.state()
    state["_residuals"] = [[x + 1e-12 for x in row] for row in state["_residuals"]]  # not float32 values
    restored = FeatureCVM(4, threshold=1.5)
    restored.restore(state)
    assert restored.state()["_residuals"] == [[float(np.float32(x)) for x in row] for row in state["_residuals"]]
