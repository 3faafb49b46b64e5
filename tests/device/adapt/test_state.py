import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from device.adapt import STATE_FILE, AdaptConfig, Adapter
from device.errors import StateError
from device.knn import BUNDLE, LEARNED, KNNClassifier
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
    names = sorted(p.name for p in tmp_path.iterdir())
    assert len(names) == 2 and names[1] == STATE_FILE and names[0].startswith("adapt_reference.")

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


def references(directory) -> list:
    return sorted(directory.glob("adapt_reference.*.npz"))


def test_a_save_without_adaptation_leaves_the_reference_file_alone(tmp_path):
    world = World(seed=0)
    adapter = Adapter(world.knn, CONFIG)
    rows = frames(world, range(300))
    feed(world, adapter, rows[:30])
    adapter.save(tmp_path)
    [reference] = references(tmp_path)
    written = reference.stat()
    feed(world, adapter, rows[30:40])  # no adaptation yet: the reference set is unchanged
    adapter.save(tmp_path)
    assert references(tmp_path) == [reference] and reference.stat().st_mtime_ns == written.st_mtime_ns
    assert reference.stat().st_ino == written.st_ino

    feed(world, adapter, rows[40:120])  # unknown-1 joins the reference set
    assert adapter.stats()["adaptations"] > 0
    adapter.save(tmp_path)
    [newer] = references(tmp_path)  # the old set's file is gone once the state names the new one
    assert newer != reference
    restored = World(seed=0)
    assert Adapter(restored.knn, CONFIG).load(tmp_path) is True
    assert restored.knn.labels.tolist() == world.knn.labels.tolist()


def test_a_power_cut_after_the_new_reference_set_keeps_the_old_state_whole(tmp_path):
    from device.adapt.store import _save_reference

    world = World(seed=0)
    adapter = Adapter(world.knn, CONFIG)
    adapter.save(tmp_path)
    before = world.knn.labels.tolist()
    feed(world, adapter, frames(world, range(120)))
    assert world.knn.labels.tolist() != before
    knn = world.knn
    _save_reference(tmp_path, knn.vectors, knn.labels.astype("<U64"), knn.origins, knn.weights)  # then the power went
    assert len(references(tmp_path)) == 2
    restored = World(seed=0)
    assert Adapter(restored.knn, CONFIG).load(tmp_path) is True
    assert restored.knn.labels.tolist() == before  # the old state, with the reference set it was saved with


def test_origins_weights_and_guesses_survive_a_restart(tmp_path):
    world = World(seed=0)
    adapter = Adapter(world.knn, CONFIG)
    feed(world, adapter, frames(world, range(90)))
    adapter.apply_label(59, "6")  # the operator confirms one pseudo-labelled sample
    adapter.save(tmp_path)
    restored = World(seed=0)
    second = Adapter(restored.knn, CONFIG)
    assert second.load(tmp_path) is True
    np.testing.assert_array_equal(restored.knn.origins, world.knn.origins)
    np.testing.assert_array_equal(restored.knn.weights, world.knn.weights)
    assert second.guesses == adapter.guesses and 59 not in second.guesses and len(second.guesses) == 7


FIXTURE = Path(__file__).parent / "fixtures" / "state_v2"


def test_state_saved_by_format_2_still_loads(tmp_path):
    """A state directory written by the code before origins were kept (mid-probation, one label waiting)."""
    expected = json.loads((FIXTURE / "expected.json").read_text())
    for path in FIXTURE.glob("adapt_*.npz"):
        shutil.copy(path, tmp_path / path.name)
    world = World(seed=0, per_class=8, max_samples=48)  # the world it was written in, at its factory state
    adapter = Adapter(world.knn, CONFIG, clock=lambda: 1000.0)
    assert adapter.load(tmp_path) is True
    stats = adapter.stats()
    assert {k: stats[k] for k in expected["stats"]} == expected["stats"] and stats["ignored_labels"] == 0
    assert world.knn.labels.tolist() == expected["labels"]
    assert [s.seq for s in adapter.quarantine] == expected["quarantine"]
    assert {k: sorted(v) for k, v in adapter.pseudo.clusters.items()} == expected["clusters"]
    assert (adapter.seq, adapter.scale) == (expected["seq"], expected["scale"])
    watch = adapter.probation.watch
    assert watch is not None and [e["label"] for e in watch.events] == [expected["probation_event"]]
    # the pseudo-labelled samples are told from the bundle's by their vectors, and vote as operator labels
    learned = world.knn.origins != BUNDLE
    assert world.knn.labels[learned].tolist() == ["unknown-1"] * 4 and set(world.knn.origins[learned]) == {LEARNED}
    assert set(world.knn.weights[learned].tolist()) == {np.float32(CONFIG.label_weight)}
    assert watch.snapshot.origins is not None and set(watch.snapshot.origins.tolist()) == {BUNDLE}
    # it carries on: the probation ends, the waiting label is applied, and the next save is format 3
    events = feed(world, adapter, frames(world, range(70, 120)))
    assert ("validated_label", "6", [67]) in [(e["action"], e["label"], e["seqs"]) for e in events]
    adapter.save(tmp_path)
    again = World(seed=0, per_class=8, max_samples=48)
    assert Adapter(again.knn, CONFIG).load(tmp_path) is True
    np.testing.assert_array_equal(again.knn.origins, world.knn.origins)


def test_state_of_the_first_format_still_loads(tmp_path):
    world = World(seed=0)
    adapter = Adapter(world.knn, CONFIG)
    feed(world, adapter, frames(world, range(120)))
    adapter.save(tmp_path)
    [reference] = references(tmp_path)
    with np.load(tmp_path / STATE_FILE) as state, np.load(reference) as ref:
        arrays = {**{k: state[k] for k in state.files}, **{k: ref[k] for k in ref.files}}
    meta = json.loads(str(arrays["meta"]))
    del meta["reference"], meta["guesses"], meta["pseudo"]["candidates"]
    arrays = {k: v for k, v in arrays.items() if not k.endswith(("_origins", "_weights"))}  # not kept then
    arrays["meta"] = np.asarray(json.dumps({**meta, "version": 1}))
    reference.unlink()
    np.savez(tmp_path / STATE_FILE, **arrays)  # version 1: one file with the reference set inside
    restored = World(seed=0)
    second = Adapter(restored.knn, CONFIG)
    assert second.load(tmp_path) is True
    assert second.stats() == adapter.stats() and restored.knn.labels.tolist() == world.knn.labels.tolist()
    learned = world.knn.origins != BUNDLE  # told apart by their vectors: the same samples are the learned ones
    np.testing.assert_array_equal(restored.knn.origins != BUNDLE, learned)
    assert set(restored.knn.origins[learned].tolist()) == {LEARNED} and second.guesses == set()


def test_a_missing_reference_file_is_a_state_error(tmp_path):
    Adapter(World(seed=0).knn, CONFIG).save(tmp_path)
    references(tmp_path)[0].unlink()
    with pytest.raises(StateError, match="cannot read the adapter's reference set"):
        Adapter(World(seed=0).knn, CONFIG).load(tmp_path)


def test_load_without_state_is_a_fresh_start(tmp_path):
    adapter = Adapter(World(seed=0).knn, CONFIG)
    assert adapter.load(tmp_path) is False


def test_state_of_another_dimension_is_refused(tmp_path):
    Adapter(World(seed=0).knn, CONFIG).save(tmp_path)
    other = KNNClassifier(k=1).fit(np.zeros((2, 3)), np.array(["a", "b"]))
    with pytest.raises(StateError, match="dimension 8, expected version 3 of dimension 3"):
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
