import copy

import pytest

from device.errors import ConfigError
from device.monitor import DEFAULT_DETECTORS, KINDS, build_monitor
from device.monitor.cusum import CUSUM


def test_defaults_build(reference: dict) -> None:
    monitor = build_monitor(None, reference, dim=4, k=5)
    assert [w.name for w in monitor.watches] == [c.get("name", c["type"]) for c in DEFAULT_DETECTORS]
    assert not monitor.drifting and monitor.skipped == 0


def test_every_kind_builds_with_its_defaults(reference: dict) -> None:
    monitor = build_monitor([{"type": t} for t in KINDS], reference)
    inputs = {"knn", "features", "labelled_features", "confidence", "label", "correct"}
    assert {w.input for w in monitor.watches} == inputs


def test_hyperparameters_round_trip(reference: dict) -> None:
    watch = build_monitor([{"type": "knn_cusum", "drift": 0.25, "threshold": 6.0, "mode": "both"}], reference).watches[
        0
    ]
    assert isinstance(watch.detector, CUSUM)
    assert (watch.detector.drift, watch.detector.threshold, watch.detector.mode) == (0.25, 6.0, "both")


def test_absolute_units_are_rescaled_by_the_reference(reference: dict) -> None:
    std, mean = reference["knn_distance"]["std"], reference["knn_distance"]["mean"]
    config = {"type": "knn_cusum", "units": "absolute", "threshold": 2 * std, "drift": std, "target": mean}
    watch = build_monitor([config], reference).watches[0]
    assert watch.detector.threshold == pytest.approx(2.0)
    assert watch.detector.drift == pytest.approx(1.0)
    assert watch.detector.target == pytest.approx(0.0)
    assert watch.scale == pytest.approx(std)


@pytest.mark.parametrize(
    ("configs", "match"),
    [
        ([{"type": "adwin"}], r"unknown type 'adwin', expected one of \['accuracy', 'confidence'"),
        ([{"threshold": 3}], "unknown type None"),
        ([{"type": "knn_cusum", "treshold": 3}], r"unknown parameters \['treshold'\], allowed: .*'threshold'"),
        ([{"type": "knn_cusum", "threshold": 0}], "'knn_cusum': threshold must be > 0"),
        ([{"type": "knn_distance", "threshold": -5}], "threshold must be > 0"),
        ([{"type": "confidence", "lam": 2}], r"lam must be in \(0, 1\]"),
        ([{"type": "feature_stats", "dim": 3}], r"unknown parameters \['dim'\]"),
        ([{"type": "feature_stats", "units": "absolute"}], r"units must be one of \('sigma',\)"),
        ([{"type": "knn_cusum", "units": "pixels"}], "units must be one of"),
        ([{"type": "knn_cusum", "cooldown": -1}], "must be integers >= 0"),
        ([{"type": "knn_cusum", "warmup": "soon"}], "must be integers >= 0"),
        ([{"type": "knn_cusum"}, {"type": "knn_cusum"}], r"\['knn_cusum'\] appear twice"),
        ({"type": "knn_cusum"}, "must be a list of objects"),
    ],
)
def test_bad_configs_are_config_errors(reference: dict, configs: object, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        build_monitor(configs, reference)  # type: ignore[arg-type]


def test_two_detectors_of_one_type_with_names(reference: dict) -> None:
    configs = [{"type": "knn_cusum", "name": "fast", "threshold": 4}, {"type": "knn_cusum", "name": "slow"}]
    assert [w.name for w in build_monitor(configs, reference).watches] == ["fast", "slow"]


def test_reference_problems_are_config_errors(reference: dict) -> None:
    flat = copy.deepcopy(reference)
    flat["knn_distance"]["std"] = 0.0
    with pytest.raises(ConfigError, match="zero variance"):
        build_monitor(None, flat)
    with pytest.raises(ConfigError, match="dimension 4, the bundle's vectors have 16"):
        build_monitor(None, reference, dim=16)
    with pytest.raises(ConfigError, match="k=5, the classifier uses k=3"):
        build_monitor(None, reference, k=3)


def test_config_is_not_mutated(reference: dict) -> None:
    configs = [{"type": "knn_cusum", "units": "absolute", "threshold": 1.0, "cooldown": 5}]
    before = copy.deepcopy(configs)
    build_monitor(configs, reference)
    assert configs == before


def test_parsed_entries_build_the_monitor_their_objects_build(reference: dict) -> None:
    from device.config import parse_config

    entries = [{"type": "knn_cusum", "name": "fast", "threshold": 4, "cooldown": 5}, {"type": "accuracy"}]
    parsed = parse_config({"drift_detectors": entries}).drift_detectors
    typed, plain = build_monitor(parsed, reference), build_monitor(entries, reference)
    assert typed.fingerprint == plain.fingerprint  # saved state stays valid across the two
    assert [(w.name, w.cooldown, w.detector.threshold) for w in typed.watches] == [
        (w.name, w.cooldown, w.detector.threshold) for w in plain.watches
    ]
