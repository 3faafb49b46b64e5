import numpy as np

from device.adapt import AdaptConfig, PseudoLabeler, find_cluster, reference_scale
from device.adapt.pseudolabel import bundle_distances, redundant, split
from device.knn import KNNClassifier


def blob(rng: np.random.Generator, centre: float, n: int, spread: float = 0.1) -> np.ndarray:
    return (centre + rng.normal(0.0, spread, size=(n, 2))).astype(np.float32)


def test_find_cluster_takes_the_densest_group_nearest_first():
    rng = np.random.default_rng(0)
    vectors = np.concatenate([blob(rng, 0.0, 4), blob(rng, 5.0, 6), blob(rng, 10.0, 1)])
    seqs = np.arange(100, 111)
    cluster = find_cluster(seqs, vectors, radius=1.0, min_size=5)
    assert cluster is not None
    assert sorted(cluster.seqs.tolist()) == [104, 105, 106, 107, 108, 109]
    assert cluster.seqs.tolist() == [108, 105, 107, 104, 109, 106]  # the medoid, then nearest first
    gaps = np.linalg.norm(vectors[cluster.seqs - 100] - vectors[8], axis=1)
    assert np.all(np.diff(gaps) >= 0)
    assert 0 < cluster.spread < 0.3


def test_find_cluster_needs_min_size_within_the_radius():
    rng = np.random.default_rng(0)
    vectors = np.concatenate([blob(rng, 0.0, 4), blob(rng, 5.0, 4)])
    assert find_cluster(np.arange(8), vectors, radius=1.0, min_size=5) is None
    assert find_cluster(np.arange(3), vectors[:3], radius=1.0, min_size=5) is None


def test_reference_scale_is_a_nearest_neighbour_quantile():
    knn = KNNClassifier(k=1).fit(np.array([[0.0], [1.0], [3.0], [7.0]]), np.array(["a", "a", "b", "b"]))
    assert reference_scale(knn, 0.5) == 1.5  # nearest distances 1, 1, 2, 4
    assert reference_scale(knn, 1.0) == 4.0


def test_split_finds_every_disjoint_cluster_densest_first():
    rng = np.random.default_rng(0)
    vectors = np.concatenate([blob(rng, 0.0, 5), blob(rng, 5.0, 7), blob(rng, 10.0, 2), blob(rng, 20.0, 6)])
    clusters = split(np.arange(100, 120), vectors, radius=1.0, min_size=4)
    assert [sorted(c.seqs.tolist()) for c in clusters] == [
        list(range(105, 112)),
        list(range(114, 120)),
        list(range(100, 105)),
    ]
    assert split(np.arange(3), vectors[:3], radius=1.0, min_size=4) == []


def test_a_cluster_is_proposed_only_after_consecutive_stable_searches():
    labeller = PseudoLabeler(AdaptConfig(min_cluster=4, join_size=2, stable_checks=2, cluster_radius=1.0))
    rng = np.random.default_rng(1)
    vectors = blob(rng, 3.0, 6)
    assert labeller.propose(np.arange(6), vectors, 1.0, "euclidean") == []
    [cluster] = labeller.propose(np.arange(6), vectors, 1.0, "euclidean")
    assert len(cluster.seqs) == 6
    assert labeller.propose(np.arange(6), vectors, 1.0, "euclidean") == []  # the streak starts again


def test_each_cluster_keeps_its_own_streak():
    labeller = PseudoLabeler(AdaptConfig(min_cluster=4, join_size=2, stable_checks=2, cluster_radius=1.0))
    rng = np.random.default_rng(4)
    a, b = blob(rng, 3.0, 5), blob(rng, 9.0, 5)
    assert labeller.propose(np.arange(5), a, 1.0, "euclidean") == []
    both = labeller.propose(np.arange(10), np.concatenate([a, b]), 1.0, "euclidean")  # a again, b for the first time
    assert [sorted(c.seqs.tolist()) for c in both] == [[0, 1, 2, 3, 4]]
    restarted = PseudoLabeler(labeller.config)  # b's streak survives a restart
    restarted.load_state(labeller.to_state())
    [again] = restarted.propose(np.arange(5, 10), b, 1.0, "euclidean")
    assert sorted(again.seqs.tolist()) == [5, 6, 7, 8, 9]
    older = PseudoLabeler(labeller.config)
    older.load_state({"next_id": 1, "clusters": {}})  # saved before streaks were kept: b starts again
    assert older.propose(np.arange(5, 10), b, 1.0, "euclidean") == []


def test_a_cluster_that_moves_is_not_stable():
    labeller = PseudoLabeler(AdaptConfig(min_cluster=4, join_size=2, stable_checks=2, stable_overlap=0.5))
    rng = np.random.default_rng(2)
    assert labeller.propose(np.arange(6), blob(rng, 3.0, 6), 1.0, "euclidean") == []
    assert labeller.propose(np.arange(10, 16), blob(rng, 3.0, 6), 1.0, "euclidean") == []  # other members


def test_naming_new_known_and_ambiguous_clusters():
    rng = np.random.default_rng(3)
    knn = KNNClassifier(k=3).fit(np.concatenate([blob(rng, 0.0, 10), blob(rng, 1.0, 10)]), np.repeat(["a", "b"], 10))
    labeller = PseudoLabeler(AdaptConfig(new_class_distance=1.0, agreement=0.8))
    far = find_cluster(np.arange(8), blob(rng, 6.0, 8), radius=1.0, min_size=4)
    near_a = find_cluster(np.arange(8), blob(rng, 0.05, 8), radius=1.0, min_size=4)
    between = find_cluster(np.arange(8), blob(rng, 0.5, 8, spread=0.3), radius=2.0, min_size=4)
    assert far is not None and near_a is not None and between is not None
    assert labeller.name(far, knn, scale=0.5) == ("unknown-1", "new_class")
    assert labeller.name(far, knn, scale=0.5) == ("unknown-2", "new_class")
    assert labeller.name(near_a, knn, scale=0.5) == ("a", "known_class")
    assert labeller.name(between, knn, scale=0.5) is None


def test_a_released_name_is_given_again_and_only_the_last_one_is_released():
    rng = np.random.default_rng(3)
    knn = KNNClassifier(k=3).fit(np.concatenate([blob(rng, 0.0, 10), blob(rng, 1.0, 10)]), np.repeat(["a", "b"], 10))
    labeller = PseudoLabeler(AdaptConfig(new_class_distance=1.0))
    far = find_cluster(np.arange(8), blob(rng, 6.0, 8), radius=1.0, min_size=4)
    assert far is not None
    assert labeller.name(far, knn, scale=0.5) == ("unknown-1", "new_class")
    labeller.release("unknown-1")
    assert labeller.name(far, knn, scale=0.5) == ("unknown-1", "new_class")
    labeller.remember("unknown-1", far.seqs)
    labeller.release("unknown-1")  # in use: kept
    assert labeller.name(far, knn, scale=0.5) == ("unknown-2", "new_class")
    labeller.release("unknown-1")  # not the last one named: nothing to give back
    assert labeller.next_id == 3


def test_a_cluster_beside_a_pseudo_label_is_a_new_class_and_never_joins_it():
    rng = np.random.default_rng(5)
    knn = KNNClassifier(k=3).fit(np.concatenate([blob(rng, 0.0, 10), blob(rng, 1.0, 10)]), np.repeat(["a", "b"], 10))
    for i, vector in enumerate(blob(rng, 6.0, 4)):
        knn.add(vector, "unknown-1", origin=100 + i)
    labeller = PseudoLabeler(AdaptConfig(new_class_distance=1.0, agreement=0.8))
    labeller.next_id = 2
    beside = find_cluster(np.arange(8), blob(rng, 6.4, 8), radius=1.0, min_size=4)
    assert beside is not None
    assert {knn.predict(v)[0] for v in beside.vectors} == {"unknown-1"}  # the kNN agrees on the pseudo-label ...
    assert labeller.name(beside, knn, scale=0.5) == ("unknown-2", "new_class")  # ... which proves nothing
    for vector in blob(rng, 6.0, 6):  # the operator named it: now a cluster there extends that class
        knn.add(vector, "7", origin=200)
    knn.rename("unknown-1", "7")
    assert labeller.name(beside, knn, scale=0.5) == ("7", "known_class")


def test_redundant_rows_go_first_and_the_spread_stays():
    vectors = np.array([[0.0, 0.0], [0.1, 0.0], [5.0, 0.0], [5.05, 0.0], [9.0, 0.0]], dtype=np.float32)
    assert redundant(vectors, 2).tolist() == [2, 0]  # one of each close pair; 9 stays, alone
    assert redundant(vectors, 9).tolist() == [2, 0, 3, 1, 4]  # never one twice


def test_bundle_distances_ignore_learned_samples():
    knn = KNNClassifier(k=1).fit(np.array([[0.0, 0.0], [10.0, 0.0]]), np.array(["a", "b"]))
    knn.add(np.array([4.0, 0.0]), "c", origin=7)
    np.testing.assert_allclose(bundle_distances(np.array([[4.5, 0.0], [9.0, 0.0]]), knn), [4.5, 1.0])


def test_records_are_bounded_and_follow_a_rename():
    labeller = PseudoLabeler(AdaptConfig(max_clusters=2, quarantine_size=16, min_cluster=4, join_size=2))
    labeller.remember("unknown-1", np.array([1, 2]))
    labeller.remember("7", np.array([3]))  # a known class: nothing to rename later
    labeller.remember("unknown-2", np.array([4]))
    labeller.remember("unknown-3", np.array([5]))
    assert list(labeller.clusters) == ["unknown-2", "unknown-3"]
    assert labeller.owner(4) == "unknown-2" and labeller.owner(1) is None
    labeller.remember("unknown-2", np.arange(100, 120))
    assert len(labeller.clusters["unknown-2"]) == 16 and min(labeller.clusters["unknown-2"]) == 104
    assert labeller.rename("unknown-3", "8") == [5]
    assert labeller.owner(5) == "8"
    state = labeller.to_state()
    other = PseudoLabeler(labeller.config)
    other.load_state(state)
    assert other.clusters == labeller.clusters and other.next_id == labeller.next_id
