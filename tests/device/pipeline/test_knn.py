import numpy as np
import pytest

from device.errors import StateError
from device.knn import KNNClassifier


def clusters(n_per_class: int = 40, dim: int = 8, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    centres = rng.normal(0, 5, size=(3, dim))
    x = np.concatenate([c + rng.normal(0, 0.5, size=(n_per_class, dim)) for c in centres]).astype(np.float32)
    y = np.repeat(["a", "b", "c"], n_per_class)
    return x, y


@pytest.mark.parametrize("metric", ["euclidean", "manhattan", "cosine"])
def test_search_matches_brute_force(metric: str) -> None:
    x, y = clusters()
    knn = KNNClassifier(k=5, metric=metric, max_samples=500).fit(x, y)
    rng = np.random.default_rng(1)
    for q in rng.normal(0, 5, size=(20, 8)).astype(np.float32):
        if metric == "euclidean":
            want = np.linalg.norm(x - q, axis=1)
        elif metric == "manhattan":
            want = np.abs(x - q).sum(axis=1)
        else:
            want = 1 - (x @ q) / (np.linalg.norm(x, axis=1) * np.linalg.norm(q))
        nb = knn.search(q)
        np.testing.assert_allclose(nb.distances, np.sort(want)[:5], rtol=1e-4, atol=1e-4)
        assert list(nb.labels) == list(y[np.argsort(want)[:5]])


def test_vote_predicts_cluster_and_confidence() -> None:
    x, y = clusters()
    knn = KNNClassifier(k=5).fit(x, y)
    label, conf = knn.predict(x[45] + 0.01)
    assert label == "b" and conf == pytest.approx(1.0)


def test_fit_bounds_reference_set_class_balanced() -> None:
    x, y = clusters(n_per_class=100)
    knn = KNNClassifier(max_samples=60).fit(x, y)
    assert len(knn) == 60
    assert sorted(np.unique(knn.labels, return_counts=True)[1].tolist()) == [20, 20, 20]


@pytest.mark.parametrize("policy", ["class_balanced", "fifo", "random"])
def test_add_keeps_bound_and_new_sample(policy: str) -> None:
    x, y = clusters(n_per_class=20)
    knn = KNNClassifier(max_samples=60, policy=policy).fit(x, y)
    knn.add(np.full(8, 30.0, dtype=np.float32), "new")
    assert len(knn) == 60
    assert "new" in knn.labels.tolist()
    assert knn.predict(np.full(8, 30.0, dtype=np.float32))[0] == "new"


def test_fifo_evicts_oldest() -> None:
    x, y = clusters(n_per_class=20)
    knn = KNNClassifier(max_samples=60, policy="fifo").fit(x, y)
    knn.add(np.zeros(8, dtype=np.float32), "z")
    assert not np.any(np.all(knn.vectors == x[0], axis=1))
    assert np.any(np.all(knn.vectors == x[1], axis=1))


def test_snapshot_restore_round_trip() -> None:
    x, y = clusters()
    knn = KNNClassifier(max_samples=200).fit(x, y)
    snap = knn.snapshot()
    knn.add(np.ones(8, dtype=np.float32), "d")
    knn.restore(snap)
    assert len(knn) == len(x) and "d" not in knn.labels.tolist()


def test_save_load_round_trip(tmp_path) -> None:
    x, y = clusters()
    knn = KNNClassifier(max_samples=200).fit(x, y)
    knn.save(tmp_path / "knn.npz")
    other = KNNClassifier(max_samples=200).load(tmp_path / "knn.npz", dim=8)
    np.testing.assert_array_equal(other.vectors, knn.vectors)
    assert other.labels.tolist() == knn.labels.tolist()
    assert [p.name for p in tmp_path.iterdir()] == ["knn.npz"]  # no temp files left behind


def test_load_rejects_other_dimension(tmp_path) -> None:
    x, y = clusters()
    KNNClassifier().fit(x, y).save(tmp_path / "knn.npz")
    with pytest.raises(StateError, match="dimension 8, the transform gives 16"):
        KNNClassifier().load(tmp_path / "knn.npz", dim=16)


def test_load_rejects_garbage(tmp_path) -> None:
    (tmp_path / "knn.npz").write_bytes(b"not a zip")
    with pytest.raises(StateError, match="cannot read kNN state"):
        KNNClassifier().load(tmp_path / "knn.npz")


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [({"k": 0}, "k must be"), ({"metric": "l3"}, "metric must be"), ({"policy": "lru"}, "policy must be"),
     ({"k": 5, "max_samples": 3}, "max_samples must be")],
)
def test_bad_parameters(kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        KNNClassifier(**kwargs)


def test_query_of_wrong_dimension() -> None:
    x, y = clusters()
    knn = KNNClassifier().fit(x, y)
    with pytest.raises(ValueError, match="dimension 8"):
        knn.search(np.zeros(4, dtype=np.float32))
