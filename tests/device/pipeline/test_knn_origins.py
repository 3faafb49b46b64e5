"""The kNN's per-sample origin and vote weight: kept through adds, evictions, snapshots and edits."""

import numpy as np
import pytest

from device.knn import BUNDLE, LEARNED, KNNClassifier

X = np.array([[0.0, 0.0], [0.2, 0.0], [0.0, 0.2], [4.0, 0.0], [4.2, 0.0], [4.0, 0.2]], dtype=np.float32)
Y = np.array(["a", "a", "a", "b", "b", "b"])


def test_the_bundle_samples_vote_with_weight_one():
    knn = KNNClassifier(k=3).fit(X, Y)
    assert knn.origins.tolist() == [BUNDLE] * 6 and knn.weights.tolist() == [1.0] * 6
    label, share = knn.predict(np.array([0.1, 0.1], dtype=np.float32))
    assert label == "a" and share == pytest.approx(1.0)


def test_a_learned_sample_votes_with_its_weight():
    knn = KNNClassifier(k=3, max_samples=10).fit(X, Y)
    query = np.array([2.0, 0.0], dtype=np.float32)
    knn.add(np.array([2.1, 0.0]), "c", origin=7, weight=1.0)
    knn.add(np.array([2.3, 0.0]), "c", origin=8, weight=1.0)
    assert knn.predict(query)[0] == "c"  # two close learned samples outvote one farther bundle sample
    near = knn.search(query)
    d = near.distances.astype(float)
    knn.relabel(np.flatnonzero(knn.origins >= 0), "c", weight=0.01)  # now they lose to the farther bundle sample
    label, share = knn.predict(query)
    scores = {"c": 0.01 / (d[0] + 1e-6) + 0.01 / (d[1] + 1e-6), near.labels[2]: 1.0 / (d[2] + 1e-6)}
    assert label == near.labels[2] and share == pytest.approx(scores[label] / sum(scores.values()), rel=1e-5)


def test_origins_and_weights_follow_evictions_snapshots_and_restores():
    knn = KNNClassifier(k=3, max_samples=6).fit(X, Y)
    knn.add(np.array([9.0, 9.0]), "c", origin=42, weight=0.5)  # full: one "a" or "b" sample leaves
    assert len(knn) == 6 and knn.find(42) is not None
    position = knn.find(42)
    assert position is not None and knn.weights[position] == np.float32(0.5) and knn.labels[position] == "c"
    snapshot = knn.snapshot()
    knn.remove(np.asarray([position]))
    assert knn.find(42) is None and len(knn) == 5
    knn.restore(snapshot)
    assert knn.find(42) is not None and sorted(knn.weights.tolist()) == [0.5] + [1.0] * 5


def test_find_only_knows_frames():
    knn = KNNClassifier(k=3).fit(X, Y)
    knn.add(np.array([9.0, 9.0]), "c")  # no frame given
    assert knn.origins[-1] == LEARNED and knn.find(LEARNED) is None and knn.find(BUNDLE) is None


def test_rename_moves_a_whole_class():
    knn = KNNClassifier(k=3, max_samples=10).fit(X, Y)
    knn.add(np.array([9.0, 9.0]), "unknown-1", origin=1)
    knn.add(np.array([9.1, 9.0]), "unknown-1", origin=2)
    assert knn.rename("unknown-1", "7") == 2 and knn.rename("nothing", "8") == 0
    assert knn.labels.tolist().count("7") == 2 and "unknown-1" not in knn.labels.tolist()


@pytest.mark.parametrize("weight", [0.0, 1.5, -1.0])
def test_weights_outside_zero_to_one_are_refused(weight):
    knn = KNNClassifier(k=3).fit(X, Y)
    with pytest.raises(ValueError, match=r"within \(0, 1\]"):
        knn.add(np.array([9.0, 9.0]), "c", weight=weight)
    with pytest.raises(ValueError, match=r"within \(0, 1\]"):
        KNNClassifier(k=3).fit(X, Y, weights=np.full(6, weight))
