import numpy as np
import pytest

from device.monitor.accuracy import AccuracyCUSUM
from tests.utils.streams import alarms


def test_exact_alarms_when_the_error_rate_rises() -> None:
    rng = np.random.default_rng(5)
    stream = [bool(c) for c in [*(rng.random(500) > 0.05), *(rng.random(300) > 0.4)]]
    found = alarms(AccuracyCUSUM(), stream)
    assert found[:4] == [508, 512, 525, 529]
    assert len(found) == 33 and min(found) >= 500


def test_correct_predictions_drain_the_sum() -> None:
    detector = AccuracyCUSUM(p0=0.1, p1=0.5, threshold=10.0)
    detector.update(False)
    assert detector.statistic > 0
    for _ in range(10):
        detector.update(True)
    assert detector.statistic == 0.0


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [({"p0": 0.3, "p1": 0.2}, "0 < p0 < p1 < 1"), ({"p1": 1.0}, "p1"), ({"threshold": 0}, "threshold must be > 0")],
)
def test_bad_hyperparameters_rejected(kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        AccuracyCUSUM(**kwargs)
