"""The novel vote: a frame the adapter quarantines is predicted among the new classes' samples, when any is near."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from device.adapt import Adapter
from tests.device.adapt.worlds import CONFIG, DRIFT, World, true_class

WIDE = dataclasses.replace(CONFIG, novel_radius=3.0)  # reaches the frames between class 6 and class 3 below


def between(world: World, t: float) -> np.ndarray:
    """A vector on the segment from new class 6's centre (t=0) to known class 3's (t=1), its nearest known one."""
    return ((1 - t) * world.centres[6] + t * world.centres[3]).astype(np.float32)


def adapted(config=WIDE, frames: int = 300) -> tuple[World, Adapter]:
    """A world whose adapter saw the standard drift: classes 6 and 7 are pseudo-labelled unknown-1 and unknown-2."""
    world = World(seed=0)
    adapter = Adapter(world.knn, config, clock=lambda: 1000.0)
    for seq in range(frames):
        adapter.observe(world.result(seq, true_class(seq)), drifting=seq >= DRIFT)
    assert sorted(set(world.knn.labels.tolist()) - set("012345")) == ["unknown-1", "unknown-2"]
    return world, adapter


def test_inert_without_a_new_class():
    """Until a pseudo-label exists, every frame keeps the plain kNN vote, quarantined or not."""
    world = World(seed=0)
    adapter = Adapter(world.knn, WIDE, clock=lambda: 1000.0)
    quarantined = 0
    for seq in range(64):  # the first pseudo-label is committed at frame 64
        result = world.result(seq, true_class(seq))
        plain = (result.label, result.confidence)
        assert adapter.novel_vote(result.vector) is None
        adapter.observe(result, drifting=seq >= DRIFT)
        quarantined += seq in adapter.quarantine
        assert (result.label, result.confidence) == plain
    assert quarantined == 24  # every drifting frame: classes 6 and 7 are far from the known ones
    assert set(world.knn.labels.tolist()) == set("012345")


def test_the_rule_changes_predictions_only_not_what_the_adapter_learns():
    """On and off, the same stream gives the same reference set and quarantine: only reported labels differ."""
    on, off = adapted(WIDE), adapted(dataclasses.replace(WIDE, novel_vote=False))
    for attr in ("vectors", "labels", "origins", "weights"):
        assert np.array_equal(getattr(on[0].knn, attr), getattr(off[0].knn, attr))
    assert [s.label for s in on[1].quarantine] == [s.label for s in off[1].quarantine]
    assert on[1].stats() == off[1].stats()


def test_a_quarantined_frame_is_predicted_among_the_new_classes():
    world, adapter = adapted()
    result = world.result(300, "6", vector=between(world, 0.45))
    assert (result.label, round(result.confidence, 4)) == ("3", 0.8033)  # the plain vote: a known class
    adapter.observe(result, drifting=True)
    assert 300 in adapter.quarantine
    assert (result.label, round(result.confidence, 4)) == ("unknown-1", 0.9287)
    assert adapter.quarantine.get(300).label == "3"  # the quarantine keeps what the kNN said


def test_beyond_the_radius_the_plain_vote_stands():
    world, adapter = adapted(CONFIG)  # novel_radius 2.0: no new-class sample that near
    result = world.result(300, "6", vector=between(world, 0.45))
    adapter.observe(result, drifting=True)
    assert 300 in adapter.quarantine
    assert (result.label, round(result.confidence, 4)) == ("3", 0.8033)


def test_off_the_plain_vote_stands():
    world, adapter = adapted(dataclasses.replace(WIDE, novel_vote=False))
    result = world.result(300, "6", vector=between(world, 0.45))
    adapter.observe(result, drifting=True)
    assert 300 in adapter.quarantine
    assert result.label == "3"


@pytest.mark.parametrize("drifting", [True, False])
def test_a_frame_not_quarantined_keeps_the_plain_vote(drifting):
    world, adapter = adapted(dataclasses.replace(WIDE, novel_radius=10.0))
    vector = between(world, 0.7)  # near class 3 and confident: not novel by the adapter's test
    assert adapter.novel_vote(vector) is not None  # the rule would have an answer for it
    result = world.result(300, "3", vector=vector)
    adapter.observe(result, drifting=drifting)
    assert 300 not in adapter.quarantine
    assert (result.label, result.confidence) == ("3", 1.0)


def test_operator_named_new_classes_vote_and_known_ones_do_not():
    """A new class the operator named (here "6") is a new class; a label naming a known class (here "3") is not."""
    world, adapter = adapted()
    rng = np.random.default_rng(1)
    for seq, label in ((1000, "6"), (1001, "3")):
        vector = (between(world, 0.5) + rng.normal(0, 0.05, world.centres.shape[1])).astype(np.float32)
        adapter.apply_label(seq, label, vector=vector)
    label, _ = adapter.novel_vote(between(world, 0.5))
    assert label == "6"


def test_a_restored_adapter_votes_alike(tmp_path):
    world, adapter = adapted()
    adapter.save(tmp_path)
    fresh = Adapter(World(seed=0).knn, WIDE)
    assert fresh.load(tmp_path)
    vector = between(world, 0.45)
    assert fresh.novel_vote(vector) == adapter.novel_vote(vector) == ("unknown-1", pytest.approx(0.9287, abs=1e-4))


def test_a_known_class_stays_known_after_a_restart_whatever_the_restored_reference_set_holds(tmp_path):
    """The bundle's classes are the bundle's, not what the restored reference set still holds: a set that lost
    every sample of class "3" (evicted under a fifo policy, say) must not turn the operator's "3" into a new class."""
    world, adapter = adapted()
    world.knn.remove(np.flatnonzero(world.knn.labels == "3"))
    adapter.save(tmp_path)
    fresh = Adapter(World(seed=0).knn, WIDE)
    assert fresh.load(tmp_path)
    assert "3" not in fresh.classifier.labels.tolist() and "3" in fresh.named.tolist()
    rng = np.random.default_rng(1)
    vector = (between(world, 0.5) + rng.normal(0, 0.05, world.centres.shape[1])).astype(np.float32)
    fresh.apply_label(1001, "3", vector=vector)
    assert fresh.novel_vote(between(world, 0.5))[0] != "3"  # a known class's label never votes as a new class


def test_a_bundle_label_without_reference_samples_is_known():
    world = World(seed=0)
    assert "9" not in world.knn.labels.tolist()
    assert "9" not in Adapter(world.knn, WIDE).named.tolist()
    assert "9" in Adapter(world.knn, WIDE, known_labels=tuple("0123459")).named.tolist()
