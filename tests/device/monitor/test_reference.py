import copy
import json

import numpy as np
import pytest

from device.errors import ConfigError
from device.monitor.reference import build_reference, check_reference


def test_reference_is_json_and_complete(reference: dict) -> None:
    assert json.loads(json.dumps(reference)) == reference
    assert (reference["n"], reference["k"], reference["metric"], reference["dim"]) == (90, 5, "euclidean", 4)
    assert set(reference["knn_distance"]) == {"mean", "std", "quantiles"}
    assert len(reference["features"]["mean"]) == len(reference["features"]["std"]) == 4
    assert reference["predictions"]["classes"] == ["a", "b", "c"]
    assert sum(reference["predictions"]["distribution"]) == pytest.approx(1.0)
    check_reference(reference, dim=4)


def test_knn_statistics_match_a_brute_force_search() -> None:
    rng = np.random.default_rng(1)
    ref, cal = rng.normal(size=(30, 3)), rng.normal(size=(12, 3))
    built = build_reference(ref, np.repeat(["x", "y", "z"], 10), cal, rng.dirichlet([1, 1, 1], 12), k=3)
    d = np.linalg.norm(cal[:, None, :] - ref[None, :, :], axis=2)
    expected = np.sort(d, axis=1)[:, :3].mean(axis=1)
    assert built["knn_distance"]["mean"] == pytest.approx(expected.mean(), rel=1e-5)
    assert built["knn_distance"]["std"] == pytest.approx(expected.std(ddof=1), rel=1e-4)
    assert built["knn_distance"]["quantiles"]["0.5"] == pytest.approx(np.median(expected), rel=1e-5)


def test_bad_inputs_to_build_are_refused() -> None:
    rng = np.random.default_rng(2)
    ref, labels = rng.normal(size=(10, 3)), np.repeat(["a", "b"], 5)
    with pytest.raises(ValueError, match="calibration vectors"):
        build_reference(ref, labels, rng.normal(size=(5, 4)), np.ones((5, 2)) / 2)
    with pytest.raises(ValueError, match="all finite"):
        build_reference(ref, labels, np.full((5, 3), np.nan), np.ones((5, 2)) / 2)


@pytest.mark.parametrize(
    ("path", "value", "match"),
    [
        (("knn_distance", "std"), 0.0, "knn_distance.std has zero variance"),
        (("confidence", "std"), float("nan"), "confidence.std must be a finite number"),
        (("features", "std"), [1.0, 0.0, 1.0, 1.0], r"features.std\[1\] has zero variance"),
        (("features", "mean"), [0.0], "feature components"),
        (("predictions", "classes"), [], "classes"),
    ],
)
def test_check_refuses_broken_references(reference: dict, path: tuple, value: object, match: str) -> None:
    broken = copy.deepcopy(reference)
    broken[path[0]][path[1]] = value
    with pytest.raises(ConfigError, match=match):
        check_reference(broken)


def test_check_refuses_wrong_dimension_and_missing_keys(reference: dict) -> None:
    with pytest.raises(ConfigError, match="dimension 4, the bundle's vectors have 8"):
        check_reference(reference, dim=8)
    with pytest.raises(ConfigError, match="missing or malformed"):
        check_reference({k: v for k, v in reference.items() if k != "confidence"})
