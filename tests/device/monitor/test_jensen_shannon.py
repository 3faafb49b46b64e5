import json
import math

import numpy as np
import pytest

from device.monitor.jensen_shannon import JensenShannon, js_divergence
from tests.utils.streams import alarms


def test_divergence_bounds() -> None:
    assert js_divergence([0.5, 0.5], [0.5, 0.5]) == 0.0
    assert math.isclose(js_divergence([1.0, 0.0], [0.0, 1.0]), 1.0)


def test_exact_alarms_when_a_new_class_appears() -> None:
    rng = np.random.default_rng(3)
    stream = [*rng.choice(list("abc"), 500), *rng.choice(list("abcd"), 300, p=[0.2, 0.2, 0.2, 0.4])]
    assert alarms(JensenShannon(list("abc"), [1 / 3] * 3), [str(s) for s in stream]) == [543, 643, 743]


def test_silent_until_the_window_is_full() -> None:
    detector = JensenShannon(["a", "b"], [0.5, 0.5], window=10, threshold=0.01)
    assert alarms(detector, ["a"] * 9) == []
    detector.update("a")
    assert detector.drift_detected and math.isclose(detector.statistic, js_divergence([1, 0, 0], [0.5, 0.5, 0]))


def test_state_round_trips() -> None:
    detector = JensenShannon(["a", "b"], [0.5, 0.5], window=4)
    for label in "abbz":
        detector.update(label)
    clone = JensenShannon(["a", "b"], [0.5, 0.5], window=4)
    clone.restore(detector.state())
    detector.update("a")
    clone.update("a")
    assert clone.statistic == detector.statistic and clone.state() == detector.state()


@pytest.mark.parametrize(
    ("args", "match"),
    [
        ((["a", "a"], [0.5, 0.5]), "distinct"),
        ((["a", "b"], [0.5]), "one per distribution entry"),
        ((["a", "b"], [0.7, 0.7]), "summing to 1"),
        ((["a"], [1.0], 0), "window must be >= 1"),
        ((["a"], [1.0], 10, 0.0), "threshold must be > 0"),
    ],
)
def test_bad_hyperparameters_rejected(args: tuple, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        JensenShannon(*args)


def test_cached_terms_give_the_same_bits_as_a_full_recomputation() -> None:
    rng = np.random.default_rng(4)
    detector = JensenShannon(list("abc"), [0.5, 0.3, 0.2], window=50, threshold=1.0)  # never alarms, never resets
    window: list[str] = []
    for label in rng.choice(list("abcd"), 400, p=[0.4, 0.3, 0.2, 0.1]):
        detector.update(str(label))
        window = [*window, str(label)][-50:]
        if len(window) == 50:
            shares = [window.count(c) / 50 for c in "abc"] + [sum(w not in "abc" for w in window) / 50]
            assert detector.statistic == js_divergence(shares, [0.5, 0.3, 0.2, 0.0])


def _shifted_stream() -> list[str]:
    rng = np.random.default_rng(3)
    return [str(s) for s in [*rng.choice(list("abc"), 500), *rng.choice(list("abcd"), 600, p=[0.2, 0.2, 0.2, 0.4])]]


def test_a_learned_class_is_taken_in_after_a_full_window_and_the_alarms_stop() -> None:
    stream = _shifted_stream()
    unlearned = alarms(JensenShannon(list("abc"), [1 / 3] * 3), stream)
    assert unlearned == [543, 643, 743, 843, 943, 1043]  # an unknown class alarms for ever

    detector = JensenShannon(list("abc"), [1 / 3] * 3)
    seen = alarms(detector, stream[:560])
    detector.learn(["a", "b", "c", "d"])  # the device's classifier learned "d" at frame 560
    seen += [560 + i for i in alarms(detector, stream[560:])]
    # 643 comes from the window before the rebase; the window after it matches the new reference.
    assert seen == [543, 643]
    reference = dict(zip([*detector.classes, "other", *detector._learned], detector._reference, strict=True))
    assert math.isclose(sum(reference.values()), 1.0) and reference["other"] == 0.0
    assert 0.3 < reference["d"] < 0.5 and all(math.isclose(reference[c], (1 - reference["d"]) / 3) for c in "abc")


def test_learning_known_classes_changes_nothing() -> None:
    stream = _shifted_stream()[:700]
    detector = JensenShannon(list("abc"), [1 / 3] * 3)
    detector.learn(["c", "a", "b"])
    assert alarms(detector, stream) == alarms(JensenShannon(list("abc"), [1 / 3] * 3), stream)


def test_state_round_trips_with_learned_classes_and_a_pending_rebase() -> None:
    detector = JensenShannon(["a", "b"], [0.5, 0.5], window=4)
    for label in "abab":
        detector.update(label)
    detector.learn(["a", "b", "z"])
    detector.update("z")  # the rebase is still 3 predictions away
    clone = JensenShannon(["a", "b"], [0.5, 0.5], window=4)
    clone.restore(json.loads(json.dumps(detector.state())))  # as the monitor saves it
    for label in "zzaz":
        detector.update(label)
        clone.update(label)
        assert clone.statistic == detector.statistic and clone.state() == detector.state()
    assert detector._learned == ["z"] and detector._reference[3] > 0  # rebased: "z" has reference mass


def test_state_saved_before_classes_could_be_learned_still_loads() -> None:
    detector = JensenShannon(["a", "b"], [0.5, 0.5], window=4)
    for label in "abbz":
        detector.update(label)
    old = {k: v for k, v in detector.state().items() if k not in ("_learned", "_rebase_in", "_reference")}
    clone = JensenShannon(["a", "b"], [0.5, 0.5], window=4)
    clone.restore(old)
    assert clone.state() == detector.state()
    with pytest.raises(ValueError, match="disagree"):
        clone.restore({**old, "_counts": [1, 1]})
