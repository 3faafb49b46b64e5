import numpy as np
import pytest

from device.monitor.page_hinkley import PageHinkley
from tests.utils.streams import alarms


@pytest.fixture
def shift_at_500() -> list[float]:
    rng = np.random.default_rng(42)
    return np.concatenate([rng.normal(0, 1, 500), rng.normal(2, 1, 300)]).tolist()


def test_exact_alarm_after_the_change(shift_at_500: list[float]) -> None:
    assert alarms(PageHinkley(threshold=20, delta=0.5), shift_at_500) == [514]


def test_down_mode_mirrors_up(shift_at_500: list[float]) -> None:
    mirrored = [-x for x in shift_at_500]
    assert alarms(PageHinkley(threshold=20, delta=0.5, mode="down"), mirrored) == [514]
    assert alarms(PageHinkley(threshold=20, delta=0.5, mode="up"), mirrored) == []


def test_no_alarm_before_min_instances() -> None:
    detector = PageHinkley(min_instances=50, threshold=1.0, delta=0.0)
    assert alarms(detector, [0.0] * 10 + [10.0] * 30) == []


def test_reset_after_alarm_relearns_the_level(shift_at_500: list[float]) -> None:
    detector = PageHinkley(threshold=20, delta=0.5)
    alarms(detector, shift_at_500[:515])
    assert detector.drift_detected
    detector.update(2.0)
    assert not detector.drift_detected and detector.statistic == 0.0


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"threshold": 0}, "threshold must be > 0"),
        ({"threshold": float("nan")}, "threshold must be > 0"),
        ({"mode": "sideways"}, r"mode must be one of \('up', 'down', 'both'\)"),
        ({"alpha": 0}, r"alpha must be in \(0, 1\]"),
        ({"delta": -1}, "delta must be >= 0"),
        ({"min_instances": 0}, "min_instances must be >= 1"),
    ],
)
def test_bad_hyperparameters_rejected(kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        PageHinkley(**kwargs)


def test_hyperparameters_round_trip() -> None:
    detector = PageHinkley(min_instances=10, delta=0.2, threshold=5.0, alpha=0.99, mode="both")
    clone = PageHinkley(**{k: v for k, v in vars(detector).items() if not k.startswith("_")})
    assert vars(clone) == vars(detector)
