import json

import numpy as np
import pytest

from device.errors import StateError
from device.monitor import DEFAULT_DETECTORS, DriftSignal, Monitor, build_monitor

CUSUM = {"type": "knn_cusum", "drift": 0.5, "threshold": 8.0}


def knn_shift(seed: int, n: int = 600, at: int = 300, shift: float = 3.0) -> np.ndarray:
    """A z-scored kNN-distance stream with a known change point."""
    rng = np.random.default_rng(seed)
    z = rng.normal(0, 1, n)
    z[at:] += shift
    return z


def run(monitor: Monitor, make_result, z: np.ndarray, start: int = 0) -> list[int]:
    alarms = []
    for i in range(start, len(z)):
        if monitor.update(make_result(i, knn=float(z[i]))):
            alarms.append(i)
    return alarms


def test_exact_alarms_with_cooldown(reference: dict, make_result) -> None:
    monitor = build_monitor([{**CUSUM, "cooldown": 100}], reference)
    assert run(monitor, make_result, knn_shift(0)) == [302, 403, 505]


def test_warmup_swallows_early_alarms(reference: dict, make_result) -> None:
    z = knn_shift(0, at=10)
    assert run(build_monitor([CUSUM], reference), make_result, z)[:2] == [14, 18]
    assert run(build_monitor([{**CUSUM, "warmup": 15}], reference), make_result, z)[:2] == [18, 21]


def test_signal_reports_detector_statistic_threshold_and_seq(reference: dict, make_result) -> None:
    monitor = build_monitor([CUSUM], reference)
    signals = [monitor.update(make_result(i, knn=4.0)) for i in range(4)]
    assert signals[:2] == [[], []]
    assert signals[2] == [DriftSignal("knn_cusum", pytest.approx(10.5), 8.0, 2)]


def test_absolute_units_are_reported_in_absolute_units(reference: dict, make_result) -> None:
    std = reference["knn_distance"]["std"]
    config = {"type": "knn_cusum", "units": "absolute", "threshold": 8.0 * std, "drift": 0.5 * std}
    monitor = build_monitor([config], reference)
    signals = [s for i in range(4) for s in monitor.update(make_result(i, knn=4.0))]
    assert signals[0].threshold == pytest.approx(8.0 * std)
    assert signals[0].statistic == pytest.approx(10.5 * std)


def test_drifting_until_hysteresis_exit(reference: dict, make_result) -> None:
    monitor = build_monitor([{**CUSUM, "hysteresis": 20}], reference)
    z = np.r_[np.zeros(10), np.full(20, 3.0), np.zeros(40)]
    drifting = []
    for i, value in enumerate(z):
        monitor.update(make_result(i, knn=float(value)))
        drifting.append(monitor.drifting)
    first, last = drifting.index(True), len(drifting) - drifting[::-1].index(True) - 1
    assert (first, last) == (13, 48)  # alarms at 13, 17, ..., 29; then 20 calm updates
    assert all(drifting[first : last + 1])


@pytest.mark.parametrize(
    "bad",
    [
        {"knn": float("nan")},
        {"knn": float("inf")},
        {"confidence": float("nan")},
        {"vector": np.array([0.0, np.nan, 0.0, 0.0])},
        {"vector": np.array([0.0, np.inf, -np.inf, 0.0])},
        {"vector": np.zeros(3)},
    ],
)
def test_bad_samples_are_skipped_and_counted(reference: dict, make_result, bad: dict) -> None:
    configs = [{"type": t} for t in ("knn_distance", "knn_cusum", "confidence", "feature_stats")]
    monitor = build_monitor(configs, reference)
    for i in range(3):
        assert monitor.update(make_result(i, **bad)) == []
    assert monitor.skipped == 3 and not monitor.drifting
    assert all(w.seen == 0 for w in monitor.watches)


def test_all_label_free_inputs_reach_their_detectors(reference: dict, make_result) -> None:
    configs = [
        {"type": "confidence", "threshold": 1.0, "lam": 0.5, "min_instances": 1},
        {"type": "feature_stats", "lam": 0.5, "min_instances": 1},
        {"type": "prediction_distribution", "window": 10},
    ]
    monitor = build_monitor(configs, reference)
    far = np.asarray(reference["features"]["mean"]) + 10 * np.asarray(reference["features"]["std"])
    fired = set()
    for i in range(10):
        fired |= {s.detector for s in monitor.update(make_result(i, confidence=-5.0, vector=far, label="z"))}
    assert fired == {"confidence", "feature_stats", "prediction_distribution"}


def test_update_label_feeds_only_the_accuracy_detector(reference: dict, make_result) -> None:
    monitor = build_monitor([CUSUM, {"type": "accuracy"}], reference)
    monitor.update(make_result(0))
    signals = [s for i in range(10) for s in monitor.update_label(False, seq=i)]
    assert [(s.detector, s.seq) for s in signals] == [("accuracy", 2), ("accuracy", 5), ("accuracy", 8)]
    assert monitor.watches[0].seen == 1


def test_state_survives_a_restart(reference: dict, make_result, tmp_path) -> None:
    configs = [{**CUSUM, "cooldown": 100}, {"type": "knn_distance", "threshold": 20.0, "delta": 0.5}]
    z = knn_shift(4)
    unbroken = run(build_monitor(configs, reference), make_result, z)
    first = build_monitor(configs, reference)
    before = run(first, make_result, z[:350])
    first.save(tmp_path / "state" / "monitor.json")
    second = build_monitor(configs, reference)
    second.load(tmp_path / "state" / "monitor.json")
    assert before + run(second, make_result, z, start=350) == unbroken
    assert list((tmp_path / "state").iterdir()) == [tmp_path / "state" / "monitor.json"]


def test_state_of_another_config_or_corrupt_is_refused(reference: dict, tmp_path) -> None:
    path = tmp_path / "monitor.json"
    build_monitor([CUSUM], reference).save(path)
    with pytest.raises(StateError, match="another configuration"):
        build_monitor([{**CUSUM, "threshold": 9.0}], reference).load(path)
    path.write_text("{not json")
    with pytest.raises(StateError, match="cannot read detector state"):
        build_monitor([CUSUM], reference).load(path)
    state = json.loads(json.dumps({"version": 1}))
    path.write_text(json.dumps(state))
    with pytest.raises(StateError):
        build_monitor([CUSUM], reference).load(path)


def test_defaults_on_a_seeded_stream(reference: dict, make_result) -> None:
    rng = np.random.default_rng(9)
    mean, std = np.asarray(reference["features"]["mean"]), np.asarray(reference["features"]["std"])
    classes, shares = reference["predictions"]["classes"], reference["predictions"]["distribution"]
    monitor = build_monitor(None, reference)
    alarms = []
    for i in range(600):
        shift = 3.0 if i >= 300 else 0.0
        result = make_result(
            i,
            knn=float(rng.normal(shift, 1.0)),
            confidence=float(rng.normal(-shift, 1.0)),
            vector=mean + std * rng.normal(0.0, 1.0, len(mean)),
            label=str(rng.choice(classes, p=shares)),
        )
        alarms += [(s.seq, s.detector) for s in monitor.update(result)]
    assert alarms == [
        (304, "knn_distance"),
        (304, "knn_cusum"),
        (323, "confidence"),
        (408, "knn_cusum"),
        (427, "confidence"),
        (509, "knn_cusum"),
        (528, "confidence"),
    ]


def _frames(reference: dict, make_result, n: int, seed: int) -> list:
    rng = np.random.default_rng(seed)
    mean, std = np.asarray(reference["features"]["mean"]), np.asarray(reference["features"]["std"])
    classes, shares = reference["predictions"]["classes"], reference["predictions"]["distribution"]
    return [
        make_result(
            i,
            knn=float(rng.normal(0.0, 1.0)),
            vector=mean + std * rng.normal(0.0, 1.0, len(mean)),
            label=str(rng.choice(classes, p=shares)),
        )
        for i in range(n)
    ]


def test_state_saved_before_a_detector_was_added_still_loads(reference: dict, make_result, tmp_path) -> None:
    earlier = [c for c in DEFAULT_DETECTORS if c["type"] != "feature_cvm"]  # the list before feature_cvm
    frames = _frames(reference, make_result, 400, seed=12)
    before = build_monitor(earlier, reference)
    for result in frames:
        before.update(result)
    before.save(tmp_path / "monitor.json")
    now = build_monitor(None, reference)
    now.load(tmp_path / "monitor.json")
    resumed = {w.name: w.state() for w in now.watches}
    assert {w.name: w.state() for w in before.watches} == {k: v for k, v in resumed.items() if k != "feature_cvm"}
    assert resumed["feature_cvm"] == build_monitor(None, reference).watches[3].state()  # starts fresh


def test_state_of_a_changed_detector_is_refused_even_when_one_was_added(reference: dict, tmp_path) -> None:
    path = tmp_path / "monitor.json"
    build_monitor([{**CUSUM, "threshold": 9.0}], reference).save(path)
    with pytest.raises(StateError, match="another configuration"):
        build_monitor([CUSUM, {"type": "feature_cvm"}], reference).load(path)
    build_monitor([CUSUM, {"type": "feature_cvm"}], reference).save(path)
    state = json.loads(path.read_text())
    del state["watches"]["feature_cvm"]  # the full configuration's fingerprint, one detector missing
    path.write_text(json.dumps(state))
    with pytest.raises(StateError, match="holds"):
        build_monitor([CUSUM, {"type": "feature_cvm"}], reference).load(path)
