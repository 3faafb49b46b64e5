import numpy as np
import pytest

from device.monitor.cusum import CUSUM
from tests.utils.streams import alarms


@pytest.fixture
def shift_at_500() -> list[float]:
    rng = np.random.default_rng(42)
    return np.concatenate([rng.normal(0, 1, 500), rng.normal(2, 1, 300)]).tolist()


def test_exact_alarms_repeat_while_the_shift_lasts(shift_at_500: list[float]) -> None:
    found = alarms(CUSUM(drift=0.5, threshold=8.0), shift_at_500)
    assert found[:6] == [506, 513, 518, 523, 527, 533]
    assert len(found) == 48


def test_lower_side(shift_at_500: list[float]) -> None:
    mirrored = [-x for x in shift_at_500]
    assert alarms(CUSUM(mode="down"), mirrored)[:3] == [506, 513, 518]
    assert alarms(CUSUM(mode="up"), mirrored) == []


def test_in_control_run_length() -> None:
    rng = np.random.default_rng(1)
    assert alarms(CUSUM(), rng.normal(0, 1, 5000).tolist()) == [3363]


def test_target_moves_the_reference_level() -> None:
    assert alarms(CUSUM(target=3.0, threshold=2.0), [3.0] * 100) == []
    assert alarms(CUSUM(target=0.0, threshold=2.0), [3.0] * 2) == [0, 1]


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [({"threshold": -1}, "threshold must be > 0"), ({"drift": -0.1}, "drift must be >= 0"), ({"mode": ""}, "mode")],
)
def test_bad_hyperparameters_rejected(kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        CUSUM(**kwargs)
