import numpy as np
import pytest

from device.monitor.feature_stats import FeatureStats
from tests.utils.streams import alarms


def test_exact_alarms_on_a_spread_increase() -> None:
    rng = np.random.default_rng(7)
    stream = np.concatenate([rng.normal(0, 1, (500, 8)), rng.normal(0, 1.6, (300, 8))])
    assert alarms(FeatureStats(8), stream) == list(range(511, 800, 20))


def test_exact_alarms_on_a_mean_shift_of_one_component() -> None:
    rng = np.random.default_rng(11)
    stream = rng.normal(0, 1, (800, 8))
    stream[500:, 0] += 1.0
    assert alarms(FeatureStats(8), stream) == [538, 561, 585, 611, 637, 658, 689, 716, 757, 785]


def test_one_far_out_frame_does_not_alarm_but_a_sustained_one_does() -> None:
    rng = np.random.default_rng(5)
    stream = rng.normal(0, 1, (400, 16))
    stream[200] = 25.0  # one rare, valid sample far from the reference (winsorised at clip=3)
    assert alarms(FeatureStats(16, threshold=8.0), stream) == []
    stream[300:] = rng.normal(0, 1, (100, 16)) + 25.0
    assert alarms(FeatureStats(16, threshold=8.0), stream)[0] == 301


def test_clip_must_be_positive() -> None:
    with pytest.raises(ValueError, match="clip"):
        FeatureStats(4, clip=0)


def test_in_control_stream_is_quiet() -> None:
    rng = np.random.default_rng(2)
    assert alarms(FeatureStats(16), rng.normal(0, 1, (3000, 16))) == []


def test_state_round_trips() -> None:
    rng = np.random.default_rng(3)
    detector = FeatureStats(4)
    for x in rng.normal(0, 1, (30, 4)):
        detector.update(x)
    clone = FeatureStats(4)
    clone.restore(detector.state())
    x = rng.normal(0, 1, 4)
    detector.update(x)
    clone.update(x)
    assert clone.statistic == detector.statistic


def test_state_of_another_dimension_is_refused() -> None:
    with pytest.raises(ValueError, match="components"):
        FeatureStats(4).restore(FeatureStats(3).state())


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [({"dim": 0}, "dim must be >= 1"), ({"dim": 4, "lam": 0}, "lam"), ({"dim": 4, "threshold": 0}, "threshold")],
)
def test_bad_hyperparameters_rejected(kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        FeatureStats(**kwargs)
