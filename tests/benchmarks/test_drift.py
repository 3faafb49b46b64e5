"""The drift benchmark's counting, calibration and baselines, on small seeded streams (figures are not judged)."""

import json
import sys
from pathlib import Path

import numpy as np
import pytest

from benchmarks import drift
from benchmarks.drift_calibration import calibrate, counted


def test_an_alarm_within_the_cooldown_is_not_counted() -> None:
    assert counted([3, 50, 103, 104, 205, 305, 306], cooldown=100) == [3, 104, 205, 306]
    assert counted([]) == []


def test_calibration_finds_the_most_sensitive_setting_within_the_budget() -> None:
    # a threshold-like parameter: int(40 / value) alarms, so at most 2 above 40 / 3
    value, trials = calibrate(lambda v: int(40 / v), sensitive=1.0, quiet=1000.0, limit=2, steps=12)
    assert 40 / 3 < value < 13.4
    assert trials[0] == [1000.0, 0] and len(trials) == 13


def test_calibration_of_a_parameter_that_alarms_more_when_higher() -> None:
    value, _ = calibrate(lambda v: int(v * 100), sensitive=0.5, quiet=1e-9, limit=3, steps=40)
    assert 0.0399 < value < 0.04 and int(value * 100) == 3


def test_calibration_returns_the_quiet_end_when_even_it_alarms_too_often() -> None:
    assert calibrate(lambda v: 5, sensitive=1.0, quiet=100.0, limit=1) == (100.0, [[100.0, 5]])


def _streams(seeds: list[int], shift: float) -> drift.Streams:
    """z-scored kNN distances and 4-d vectors: 500 clean frames, then 300 shifted by `shift` σ."""
    streams: drift.Streams = {}
    for scenario in [drift.CONTROL, *drift.SCENARIOS]:
        streams[scenario] = {}
        for seed in seeds:
            rng = np.random.default_rng(seed)
            knn = rng.normal(0, 1, drift.PRE + drift.POST)
            if scenario != drift.CONTROL:
                knn[drift.PRE :] += shift
            vectors = rng.normal(0, 1, (drift.PRE + drift.POST, 4)).astype(np.float32)
            streams[scenario][seed] = drift.Stream([], knn.tolist(), vectors)
    return streams


def test_river_baselines_are_reset_counted_and_calibrated_to_the_budget() -> None:
    streams = _streams([0, 1, 2], shift=3.0)
    # river alarms every few frames at this threshold; 100 frames must pass before the next one counts
    assert drift.river("PageHinkley", threshold=5.0)(streams[drift.CONTROL][0], 0) == [39, 159, 283, 389, 497, 621, 741]
    assert drift.river("PageHinkley", threshold=20.0)(streams["blur"][0], 0) == [238, 503, 617, 745]
    table, settings = drift.river_calibrated(streams, limit=1)
    assert set(table) == {f"river.{name}.calibrated" for name in drift.RIVER}
    for name, run in table.items():
        assert drift.control_alarms(run, streams, limit=10) <= 1
        assert settings[name]["calibration"]  # every trial is reported
    threshold = settings["river.PageHinkley.calibrated"]["threshold"]
    assert 1.0 < threshold < 5000.0  # neither end: a calibrated value


def test_summary_reports_delays_misses_and_false_alarms() -> None:
    alarms: drift.Alarms = {drift.CONTROL: {0: [100], 1: [], 2: [700]}}
    alarms.update({s: {0: [10, 507], 1: [520], 2: [790]} for s in drift.SCENARIOS})
    row = drift.summarise(alarms, us=1.5)["blur"]
    assert row == {
        "median_delay": 13.5,
        "mean_delay": 13.5,
        "miss_rate": 0.3333,
        "false_alarms_per_1000": round(1000 * 2 / 2400, 3),
        "false_alarms": 2,
        "us_per_update": 1.5,
    }


def test_alibi_baselines_are_skipped_with_a_reason_when_alibi_detect_is_missing(tmp_path: Path) -> None:
    # the project's venv has numpy 2, which alibi-detect does not support: the worker there reports it
    streams = _streams([0], shift=3.0)
    found, settings = drift.alibi(Path(sys.executable), ["cvm"], streams, streams, 1, None)
    assert found == {} and "alibi-detect is not installed" in settings["error"]
    found, settings = drift.alibi(tmp_path / "missing" / "python", ["cvm"], streams, streams, 1, None)
    assert found == {} and "does not exist" in settings["error"]


def test_tuning_finds_the_lowest_threshold_without_a_false_alarm() -> None:
    reference = json.loads((drift.BUNDLE / "drift_reference.json").read_text())
    mean, std = reference["knn_distance"]["mean"], reference["knn_distance"]["std"]
    streams: drift.Streams = {drift.CONTROL: {}}
    for seed in range(3):
        rng = np.random.default_rng(seed)
        arrays = {
            "distances": np.repeat(mean + std * rng.normal(0, 1, (800, 1)), 5, axis=1).astype(np.float32),
            "vectors": rng.normal(0, 1, (800, reference["dim"])).astype(np.float32),
            "confidence": np.full(800, 0.99),
            "labels": np.array(["0"] * 800),
            "truth": np.array(["0"] * 800),
        }
        streams[drift.CONTROL][seed] = drift.Stream(drift.from_arrays(arrays), [], arrays["vectors"])
    config = {"type": "knn_cusum", "drift": 0.5, "threshold": 2.0}
    quiet = drift.quiet_from(config, reference, streams)
    assert quiet == pytest.approx(5.6267, abs=1e-3)  # the largest CUSUM excursion of these streams

    def alarms_at(threshold: float) -> int:
        run = drift.ours([{**config, "threshold": threshold}], reference)
        return sum(len(run(stream, seed)) for seed, stream in streams[drift.CONTROL].items())

    assert alarms_at(quiet) == 0 and alarms_at(quiet * 0.999) > 0
