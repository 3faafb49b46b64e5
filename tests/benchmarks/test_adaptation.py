"""The adaptation benchmark's scoring, summary and kNN ceiling, and one seed through the real pipeline."""

import numpy as np
import pytest

from benchmarks.adaptation import ceiling_classifier, evaluate, losses, score, summarise
from device.knn import KNNClassifier


def test_score_maps_pseudo_labels_to_the_class_that_joined_under_them():
    post = [(500, "unknown-1", "7"), (501, "7", "7"), (502, "3", "8"), (503, "unknown-2", "8")]
    assert score(post, {"unknown-1": "7", "unknown-2": "9"}) == {
        "accuracy": 0.25,
        "mapped_accuracy": 0.5,
        "novel_rate": 0.5,
    }


def test_losses_say_where_the_frames_missed_and_how_fast_accuracy_rose():
    post = [(500, "3", "7"), (501, "5", "7"), (502, "3", "8"), (503, "unknown-1", "8"), (504, "unknown-2", "9")]
    assert losses(post, {"unknown-1": "7", "unknown-2": "9"}, first=501) == {
        "lost_ramp_up": 2,  # frames 500 and 501 were predicted before the pseudo-label of frame 501 existed
        "lost_known_class": 1,
        "lost_wrong_cluster": 1,
        "first_pseudo_label": 2,
        "mapped_by_span": [0.2],
    }
    assert losses(post, {}, first=None)["lost_ramp_up"] == 5
    assert losses(post, {}, first=None)["first_pseudo_label"] is None


def test_summarise_gives_mean_and_std_of_numbers_only():
    summary = summarise([{"accuracy": 0.2, "events": {}}, {"accuracy": 0.4, "events": {}}])
    assert summary == {"accuracy": {"mean": 0.3, "std": 0.1414}}


def test_the_ceiling_is_the_same_knn_on_the_bundle_and_exactly_the_given_labels_unbounded():
    device = KNNClassifier(k=3, max_samples=4).fit(np.zeros((4, 2)), np.array(["a", "a", "b", "b"]))
    device.add(np.ones(2), "c", origin=1)  # what the device learned does not count, only what it was given
    factory = KNNClassifier(k=3, max_samples=4).fit(np.zeros((4, 2)), np.array(["a", "a", "b", "b"])).snapshot()
    given = [(np.full(2, 5.0, np.float32), "x"), (np.full(2, 5.1, np.float32), "x"), (np.full(2, 5.2, np.float32), "y")]
    ceiling = ceiling_classifier(device, factory, given)
    assert len(ceiling) == 7 and ceiling.k == 3 and ceiling.metric == device.metric  # no bound: nothing evicted
    assert sorted(ceiling.labels.tolist()) == ["a", "a", "b", "b", "x", "x", "y"]
    assert set(ceiling.weights.tolist()) == {1.0}  # a plain kNN: every sample votes alike


@pytest.mark.slow
def test_one_seed_through_the_real_pipeline():
    report = evaluate([0])
    assert report["none"]["per_seed"][0]["accuracy"] == 0.0  # no 6-9 in the factory reference
    validated = report["validated"]["per_seed"][0]
    assert validated["accuracy"] > report["none"]["per_seed"][0]["accuracy"]
    assert validated["ceiling_ratio"] == round(validated["after_labels"] / validated["ceiling"], 4)
    assert report["heuristic"]["per_seed"][0]["retention"] > 0.9
    mixed = report["mixed"]["per_seed"][0]
    assert set(mixed) == {"known_accuracy", "new_mapped"} and mixed["known_accuracy"] > 0.9
    control = report["control"]["total"]
    assert control["pseudo_labels"] == 0 and control["reference_changed"] == 0
