import pytest

from benchmarks.adaptation import BUNDLE, evaluate, score, summarise


def test_score_maps_pseudo_labels_to_the_class_that_joined_under_them():
    post = [(500, "unknown-1", "7"), (501, "7", "7"), (502, "3", "8"), (503, "unknown-2", "8")]
    assert score(post, {"unknown-1": "7", "unknown-2": "9"}) == {
        "accuracy": 0.25,
        "mapped_accuracy": 0.5,
        "novel_rate": 0.5,
    }


def test_summarise_gives_mean_and_std_of_numbers_only():
    summary = summarise([{"accuracy": 0.2, "events": {}}, {"accuracy": 0.4, "events": {}}])
    assert summary == {"accuracy": {"mean": 0.3, "std": 0.1414}}


@pytest.mark.slow
@pytest.mark.skipif(not (BUNDLE / "bundle.json").exists(), reason="needs the factory bundle")
def test_one_seed_through_the_real_pipeline():
    report = evaluate([0])
    assert report["none"]["per_seed"][0]["accuracy"] == 0.0  # no 6-9 in the factory reference
    assert report["validated"]["per_seed"][0]["accuracy"] > report["none"]["per_seed"][0]["accuracy"]
    assert report["heuristic"]["per_seed"][0]["retention"] > 0.9
