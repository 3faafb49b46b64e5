import json

import numpy as np

from tests.device.adapt.worlds import CONFIG, true_class


def test_in_distribution_frames_are_not_quarantined(world, adapter, stream):
    assert stream(range(40)) == {}
    assert len(adapter.quarantine) == 0


def test_nothing_is_quarantined_while_not_drifting(world, adapter, stream):
    assert stream(range(120), drifting=False) == {}
    assert len(adapter.quarantine) == 0 and adapter.stats()["adaptations"] == 0


def test_stable_new_clusters_are_pseudo_labelled(world, adapter, stream):
    events = stream(range(300))
    assert sorted(events) == [64, 94]
    first, second = events[64][0], events[94][0]
    assert (first["action"], first["label"], first["reason"], first["seqs"]) == (
        "pseudo_label",
        "unknown-1",
        "new_class",
        [59, 41, 55, 63],
    )
    assert (second["label"], second["seqs"], second["members"]) == ("unknown-2", [92, 82, 62, 54], 15)
    assert {true_class(s) for s in first["seqs"]} == {"6"}
    assert {true_class(s) for s in second["seqs"]} == {"7"}
    assert json.loads(json.dumps([first, second])) == [first, second]  # plain JSON for the outbox
    labels = world.knn.labels.tolist()
    assert labels.count("unknown-1") == 4 and labels.count("unknown-2") == 4
    assert len(world.knn) == 120  # bounded: each join evicted a redundant sample
    assert adapter.stats()["adaptations"] == 2 and adapter.stats()["rollbacks"] == 0


def test_joined_samples_leave_the_quarantine(world, adapter, stream):
    events = stream(range(65))
    assert events[64][0]["sizes"]["quarantine"] == len(adapter.quarantine) == 17
    assert not any(seq in adapter.quarantine for seq in events[64][0]["seqs"])


def test_rollback_when_confidence_collapses(world, adapter, stream):
    stream(range(64))
    before = world.knn.snapshot()
    stream([64])
    events = {}
    for seq in range(65, 85):  # known-class frames, now voted with little confidence
        result = world.result(seq, "0")
        result.confidence = 0.3
        if found := adapter.observe(result, drifting=False):
            events[seq] = found
    assert list(events) == [84]
    rollback = events[84][0]
    assert (rollback["action"], rollback["label"], rollback["reason"]) == (
        "rollback",
        "unknown-1",
        "confidence_collapse",
    )
    assert rollback["seqs"] == [59, 41, 55, 63] and rollback["after"]["confidence"] == 0.3
    np.testing.assert_array_equal(world.knn.vectors, before.vectors)
    assert world.knn.labels.tolist() == before.labels.tolist()
    assert adapter.cooldown_until == 84 + CONFIG.cooldown and adapter.pseudo.owner(59) is None


def test_rollback_when_the_quarantine_keeps_growing(world, adapter, stream):
    stream(range(65))
    far = world.centres[9] * 3  # nowhere near anything: every frame is flagged
    events = {}
    for seq in range(65, 85):
        result = world.result(seq, "9", vector=(far + world.rng.normal(0, 5, 8)).astype(np.float32))
        if found := adapter.observe(result, drifting=True):
            events[seq] = found
    assert list(events) == [84] and events[84][0]["reason"] == "quarantine_growth"
    assert events[84][0]["after"]["inflow"] == 1.0
    assert "unknown-1" not in world.knn.labels.tolist()


def test_no_pseudo_labelling_during_the_cooldown(world, adapter, stream):
    test_rollback_when_confidence_collapses(world, adapter, stream)
    assert stream(range(85, 84 + CONFIG.cooldown)) == {}
    assert len(adapter.quarantine) > CONFIG.min_cluster


def test_a_kept_adaptation_ends_its_probation_quietly(world, adapter, stream):
    stream(range(85))
    assert not adapter.probation.active and "unknown-1" in world.knn.labels.tolist()
