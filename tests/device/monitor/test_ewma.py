import numpy as np
import pytest

from device.monitor.ewma import EWMA
from tests.utils.streams import alarms


def test_exact_alarms_on_a_confidence_drop() -> None:
    rng = np.random.default_rng(42)
    stream = np.concatenate([rng.normal(0, 1, 500), rng.normal(-2, 1, 300)]).tolist()
    assert alarms(EWMA(lam=0.05, threshold=1.0, mode="down"), stream) == list(range(510, 800, 20))
    assert alarms(EWMA(lam=0.05, threshold=1.0, mode="up"), stream) == []


def test_both_sides_and_min_instances() -> None:
    assert alarms(EWMA(lam=1.0, threshold=1.0, min_instances=3, mode="both"), [5.0, -5.0, -5.0, 5.0]) == [2]


def test_target_is_the_starting_level() -> None:
    detector = EWMA(target=0.5, lam=0.5, threshold=1.0, mode="up", min_instances=1)
    detector.update(0.5)
    assert detector.statistic == 0.0


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [({"lam": 0}, r"lam must be in \(0, 1\]"), ({"lam": 1.5}, "lam"), ({"threshold": 0}, "threshold must be > 0")],
)
def test_bad_hyperparameters_rejected(kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        EWMA(**kwargs)
