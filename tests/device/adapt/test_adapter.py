import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest

from device.adapt import AdaptConfig, Adapter
from device.capture import open_source
from device.pipeline.pipeline import Pipeline
from tests.device.adapt.worlds import CONFIG, DRIFT, true_class

BUNDLE = Path(__file__).resolve().parents[3] / "device" / "models" / "digits"


def test_in_distribution_frames_are_not_quarantined(world, adapter, stream):
    assert stream(range(40)) == {}
    assert len(adapter.quarantine) == 0


def test_nothing_is_quarantined_while_not_drifting(world, adapter, stream):
    assert stream(range(120), drifting=False) == {}
    assert len(adapter.quarantine) == 0 and adapter.stats()["adaptations"] == 0


def test_stable_new_clusters_are_pseudo_labelled(world, adapter, stream):
    events = stream(range(300))
    assert sorted(events) == [64, 72]
    first, second = events[64][0], events[72][0]
    assert (first["action"], first["label"], first["reason"], first["seqs"]) == (
        "pseudo_label",
        "unknown-1",
        "new_class",
        [59, 41, 55, 63],
    )
    assert (second["label"], second["seqs"], second["members"]) == ("unknown-2", [50, 70, 40, 62], 8)
    assert {true_class(s) for s in first["seqs"]} == {"6"}
    assert {true_class(s) for s in second["seqs"]} == {"7"}
    assert json.loads(json.dumps([first, second])) == [first, second]  # plain JSON for the outbox
    labels = world.knn.labels.tolist()
    assert labels.count("unknown-1") == 4 and labels.count("unknown-2") == 4
    assert len(world.knn) == 120  # bounded: each join evicted a redundant sample
    assert adapter.stats()["adaptations"] == 2 and adapter.stats()["rollbacks"] == 0


def test_a_search_during_a_probation_joins_it(world, adapter, stream):
    stream(range(73))  # unknown-2 was found at 72, while unknown-1 (64) was on probation
    watch = adapter.probation.watch
    assert watch is not None and [e["label"] for e in watch.events] == ["unknown-1", "unknown-2"]
    assert watch.snapshot.labels.tolist().count("unknown-1") == 0  # the state before the first of them
    assert stream(range(73, 85)) == {} and not adapter.probation.active  # judged 20 frames after the first


def test_pseudo_labelled_samples_remember_their_frames_and_vote_less(world, adapter, stream):
    stream(range(65))
    knn = world.knn
    joined = knn.origins >= 0
    assert sorted(knn.origins[joined].tolist()) == [41, 55, 59, 63] and sorted(adapter.guesses) == [41, 55, 59, 63]
    assert set(knn.labels[joined].tolist()) == {"unknown-1"}
    assert set(knn.weights[joined].tolist()) == {np.float32(CONFIG.pseudo_weight)}
    assert set(knn.weights[~joined].tolist()) == {1.0}


def test_joined_samples_leave_the_quarantine(world, adapter, stream):
    events = stream(range(65))
    assert events[64][0]["sizes"]["quarantine"] == len(adapter.quarantine) == 17
    assert not any(seq in adapter.quarantine for seq in events[64][0]["seqs"])


def test_a_new_cluster_none_of_whose_members_may_join_is_not_named(world, stream):
    """Every central member within `join_distance` of the bundle's samples: nothing joins, no `unknown-N` is
    used up, and the members leave the quarantine (the next search does not find them again)."""
    adapter = Adapter(world.knn, dataclasses.replace(CONFIG, join_distance=1000.0), clock=lambda: 1000.0)
    before = world.knn.snapshot()
    for seq in range(65):
        assert adapter.observe(world.result(seq, true_class(seq)), drifting=seq >= DRIFT) == []
    assert adapter.pseudo.next_id == 1 and not adapter.pseudo.clusters and not adapter.probation.active
    assert len(adapter.quarantine) == 17 and adapter.stats()["adaptations"] == 0
    np.testing.assert_array_equal(world.knn.snapshot().labels, before.labels)
    later = dataclasses.replace(CONFIG, join_distance=0.0)  # the same adapter, members allowed to join again
    adapter.config = later
    events = [e for seq in range(65, 120) for e in adapter.observe(world.result(seq, true_class(seq)), True)]
    assert events and events[0]["label"] == "unknown-1"


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


def test_frames_voted_to_a_pseudo_label_are_not_judged_for_a_collapse(world, adapter, stream):
    stream(range(65))  # unknown-1 joined at 64: on probation
    watch = adapter.probation.watch
    assert watch is not None and watch.baseline["named"] == watch.baseline["frames"] == CONFIG.window
    events = {}
    for seq in range(65, 85):  # confident known-class votes, and a third of the frames to unknown-1 with little
        result = world.result(seq, "0")
        if seq % 3 == 0:
            result.label, result.confidence = "unknown-1", 0.1
        if found := adapter.observe(result, drifting=False):
            events[seq] = found
    assert watch.frames == 20 and watch.named == 13
    assert watch.named_confidence / watch.named == 1.0 and watch.confidence / watch.frames == pytest.approx(0.685)
    assert events == {} and not adapter.probation.active and "unknown-1" in world.knn.labels.tolist()  # kept
    # judged over every frame, as before, the same frames read as a collapse: the baseline's confidence was
    assert watch.baseline["confidence"] - 0.685 > CONFIG.max_confidence_drop


def test_rollback_when_the_quarantine_keeps_growing(world, adapter, stream):
    stream(range(65))
    far = world.centres[9] * 3  # nowhere near anything: every frame is flagged
    events = {}
    for seq in range(65, 85):
        result = world.result(seq, "9", vector=(far + world.rng.normal(0, 5, 8)).astype(np.float32))
        if found := adapter.observe(result, drifting=True):
            events[seq] = found
    assert list(events) == [69, 84]
    assert [(e["action"], e["label"]) for e in events[69]] == [("pseudo_label", "unknown-2")]
    # both adaptations of the probation are rolled back, to the state before the first of them
    assert [(e["action"], e["label"], e["reason"]) for e in events[84]] == [
        ("rollback", "unknown-1", "quarantine_growth"),
        ("rollback", "unknown-2", "quarantine_growth"),
    ]
    assert events[84][0]["after"]["inflow"] == 1.0 and events[84][1]["seqs"] == [50, 40, 62, 46]
    assert not {"unknown-1", "unknown-2"} & set(world.knn.labels.tolist())
    assert adapter.pseudo.clusters == {}


def test_no_pseudo_labelling_during_the_cooldown(world, adapter, stream):
    test_rollback_when_confidence_collapses(world, adapter, stream)
    assert stream(range(85, 84 + CONFIG.cooldown)) == {}
    assert len(adapter.quarantine) > CONFIG.min_cluster


def test_a_kept_adaptation_ends_its_probation_quietly(world, adapter, stream):
    stream(range(85))
    assert not adapter.probation.active and "unknown-1" in world.knn.labels.tolist()


@pytest.mark.slow
def test_a_long_false_alarm_over_known_classes_commits_nothing():
    """2000 in-distribution digit frames while the detectors (wrongly) say drifting throughout: the rare
    outliers of the known classes are quarantined, expire, and never make a cluster."""
    pipeline = Pipeline.from_bundle(BUNDLE, detect=False)
    before = pipeline.classifier.snapshot()
    adapter = Adapter(pipeline.classifier, AdaptConfig())
    source = open_source("digits", seed=5, limit=2000)
    events = [e for seq, frame in enumerate(source) for e in adapter.observe(pipeline.process(frame, seq), True)]
    assert events == [] and adapter.stats()["quarantine_dropped"] == 260
    after = pipeline.classifier.snapshot()
    for field in ("vectors", "labels", "origins", "weights"):
        np.testing.assert_array_equal(getattr(after, field), getattr(before, field))
