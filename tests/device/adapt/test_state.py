import numpy as np
import pytest

from device.adapt import STATE_FILE, AdaptConfig, Adapter
from device.errors import StateError
from device.pipeline.knn import KNNClassifier
from tests.device.adapt.worlds import CONFIG, World, true_class


def frames(world: World, seqs: range) -> list:
    return [(seq, true_class(seq), world.draw(true_class(seq))) for seq in seqs]


def feed(world: World, adapter: Adapter, rows: list) -> list:
    events = []
    for seq, cls, vector in rows:
        events += adapter.observe(world.result(seq, cls, vector), drifting=seq >= 40)
    return events


def test_state_round_trips_mid_probation(tmp_path):
    world = World(seed=0)
    first = Adapter(world.knn, CONFIG, clock=lambda: 1000.0)
    rows = frames(world, range(300))
    feed(world, first, rows[:70])  # unknown-1 joined at 64: on probation now
    first.apply_label(66, "6")  # queued behind the probation
    first.save(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == [STATE_FILE]

    restored_world = World(seed=0)  # the factory reference set, as after a reboot
    second = Adapter(restored_world.knn, CONFIG, clock=lambda: 1000.0)
    assert second.load(tmp_path) is True
    assert second.stats() == first.stats()
    np.testing.assert_array_equal(restored_world.knn.vectors, world.knn.vectors)
    assert [s.seq for s in second.quarantine] == [s.seq for s in first.quarantine]
    assert second.pseudo.clusters == first.pseudo.clusters and second.probation.active

    # both continue on the same frames and must agree on every decision
    assert feed(restored_world, second, rows[70:]) == feed(world, first, rows[70:])
    assert restored_world.knn.labels.tolist() == world.knn.labels.tolist()


def test_load_without_state_is_a_fresh_start(tmp_path):
    adapter = Adapter(World(seed=0).knn, CONFIG)
    assert adapter.load(tmp_path) is False


def test_state_of_another_dimension_is_refused(tmp_path):
    Adapter(World(seed=0).knn, CONFIG).save(tmp_path)
    other = KNNClassifier(k=1).fit(np.zeros((2, 3)), np.array(["a", "b"]))
    with pytest.raises(StateError, match="dimension 8, expected version 1 of dimension 3"):
        Adapter(other, CONFIG).load(tmp_path)


def test_corrupt_state_is_a_state_error(tmp_path):
    (tmp_path / STATE_FILE).write_bytes(b"not an npz")
    with pytest.raises(StateError, match="cannot read adapter state"):
        Adapter(World(seed=0).knn, CONFIG).load(tmp_path)


def test_memory_stays_bounded_over_a_long_drift():
    world = World(seed=1, max_samples=90)
    config = AdaptConfig(
        min_cluster=6,
        join_size=6,
        check_every=3,
        window=20,
        probation=10,
        cooldown=10,
        quarantine_size=32,
        max_age=60,
        max_pending=8,
        max_clusters=2,
    )
    adapter = Adapter(world.knn, config)
    for seq in range(1500):
        cls = str(seq % 6) if seq < 100 else str(6 + seq % 4)
        adapter.observe(world.result(seq, cls), drifting=seq >= 100)
        if seq % 7 == 0:
            adapter.apply_label(seq, cls, vector=world.draw(cls))
        assert len(world.knn) <= 90 and len(adapter.quarantine) <= 32
        assert len(adapter.pending) <= 8 and len(adapter.pseudo.clusters) <= 2
    assert all(len(m) <= 32 for m in adapter.pseudo.clusters.values())
    assert adapter.stats()["adaptations"] > 0
