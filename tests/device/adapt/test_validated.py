import numpy as np
import pytest

from device.knn import BUNDLE
from tests.device.adapt.worlds import CONFIG


def quarantine_some(world, adapter, cls="8", n=5, start=100):
    """Drifting frames of a new class, fewer than a cluster needs: they wait in quarantine."""
    for seq in range(start, start + n):
        assert adapter.observe(world.result(seq, cls), drifting=True) == []
    return list(range(start, start + n))


def test_a_label_for_a_quarantined_sample_joins_the_reference(world, adapter):
    seqs = quarantine_some(world, adapter)
    events = adapter.apply_label(seqs[0], "8")
    assert [(e["action"], e["label"], e["seqs"], e["reason"]) for e in events] == [
        ("validated_label", "8", [100], "operator")
    ]
    assert seqs[0] not in adapter.quarantine and len(adapter.quarantine) == 4
    assert world.knn.labels.tolist().count("8") == 1 and len(world.knn) == 120


def test_a_label_with_a_vector_joins_even_when_the_sample_left(world, adapter):
    vector = world.draw("9")
    events = adapter.apply_label(7, "9", vector=vector)
    assert events[0]["action"] == "validated_label" and events[0]["seqs"] == [7]
    position = world.knn.find(7)
    assert position is not None and world.knn.labels[position] == "9"
    assert world.knn.weights[position] == np.float32(CONFIG.label_weight) < 1  # votes less than a bundle sample
    assert world.knn.predict(vector)[0] == "9"


def test_labels_wait_while_a_pseudo_label_is_on_probation(world, adapter, stream):
    stream(range(65))  # unknown-1 joined at 64, on probation until 84
    assert adapter.probation.active
    assert adapter.apply_label(60, "7") == []
    assert adapter.stats()["pending_labels"] == 1
    for seq in range(65, 84):
        assert adapter.observe(world.result(seq, "0"), drifting=False) == []
    assert adapter.observe(world.result(84, "0"), drifting=False) == []  # probation ends, adaptation kept
    events = adapter.observe(world.result(85, "0"), drifting=False)
    assert [(e["action"], e["label"], e["seqs"]) for e in events] == [("validated_label", "7", [60])]
    assert adapter.stats()["pending_labels"] == 0


def test_an_operator_label_renames_a_pseudo_labelled_cluster(world, adapter, stream):
    stream(range(85))
    events = adapter.apply_label(59, "6")  # 59 joined the reference as unknown-1
    assert [(e["action"], e["label"], e["reason"]) for e in events] == [
        ("relabel", "6", "operator"),
        ("validated_label", "6", "confirmation"),  # the labelled frame's own sample is now the operator's
    ]
    assert (events[0]["previous"], events[0]["renamed"]) == ("unknown-1", 4)
    assert events[0]["seqs"] == [41, 47, 49, 55, 57, 59, 61, 63]  # every member of the cluster: all sixes
    labels = world.knn.labels.tolist()
    assert "unknown-1" not in labels and labels.count("6") == 4
    # another member of the same cluster, that did not join: its cluster already bears the name
    assert [(e["action"], e["reason"]) for e in adapter.apply_label(47, "6")] == [("label_ignored", "cluster_named")]
    assert adapter.pseudo.owner(41) == "6"


def test_a_contradicting_label_corrects_one_frame_never_its_whole_class(world, adapter, stream):
    stream(range(85))
    adapter.apply_label(59, "6")  # names the cluster: its four joined samples become sixes
    events = adapter.apply_label(55, "7")  # the operator says one of them is a seven
    assert [(e["action"], e["label"], e["seqs"], e["reason"], e["previous"]) for e in events] == [
        ("validated_label", "7", [55], "correction", "6")
    ]
    labels = world.knn.labels.tolist()
    assert labels.count("6") == 3 and labels.count("7") == 1 and len(world.knn) == 120
    assert world.knn.labels[world.knn.find(55)] == "7" and world.knn.labels[world.knn.find(59)] == "6"


def test_a_repeated_label_changes_nothing(world, adapter):
    vector = world.draw("9")
    adapter.apply_label(7, "9", vector=vector)
    before = world.knn.snapshot()
    events = adapter.apply_label(7, "9", vector=vector)
    assert [(e["action"], e["seqs"], e["reason"]) for e in events] == [("label_ignored", [7], "duplicate")]
    np.testing.assert_array_equal(world.knn.vectors, before.vectors)
    assert adapter.stats()["ignored_labels"] == 1 and adapter.stats()["adaptations"] == 1


def test_a_flood_of_contradicting_labels_for_one_frame_leaves_one_sample(world, adapter, stream):
    vector = world.draw("8")
    before = world.knn.snapshot()
    outcomes = [adapter.apply_label(300, "8" if i % 2 else "9", vector=vector) for i in range(200)]
    assert len(world.knn) == 120 and int(np.sum(world.knn.origins == 300)) == 1  # one sample for the frame
    assert world.knn.labels[world.knn.find(300)] == "8"  # the last word
    rows_before = {row.tobytes() for row in before.vectors}
    rows_after = {row.tobytes() for row in world.knn.vectors}
    assert rows_after - rows_before == {vector.tobytes()} and len(rows_before - rows_after) == 1  # made room once
    assert [e["reason"] for e in outcomes[0]] == ["operator"] and {e["reason"] for o in outcomes[1:] for e in o} == {
        "correction"
    }


def test_a_flood_while_on_probation_keeps_one_label_per_frame_and_loses_no_other(world, adapter, stream):
    stream(range(65))  # unknown-1 on probation: labels wait
    assert adapter.apply_label(60, "7") == []
    vector = world.draw("8")
    flood = [adapter.apply_label(300, str(i % 10), vector=vector) for i in range(1000)]  # > max_pending of 512
    assert flood[0] == [] and {(e["action"], e["reason"]) for o in flood[1:] for e in o} == {
        ("label_ignored", "superseded")
    }
    assert adapter.stats()["pending_labels"] == 2 and adapter.pending.dropped == 0
    for seq in range(65, 85):
        adapter.observe(world.result(seq, "0"), drifting=False)
    events = adapter.observe(world.result(85, "0"), drifting=False)
    assert sorted((e["label"], tuple(e["seqs"])) for e in events) == [("7", (60,)), ("9", (300,))]
    assert int(np.sum(world.knn.origins == 300)) == 1 and int(np.sum(world.knn.origins == 60)) == 1


def test_unknown_seq_without_vector_is_reported(world, adapter):
    events = adapter.apply_label(12345, "8")
    assert [(e["action"], e["seqs"], e["reason"]) for e in events] == [("label_rejected", [12345], "unknown_seq")]
    assert adapter.stats()["rejected_labels"] == 1 and len(world.knn) == 120


def test_label_with_a_nan_vector_is_rejected(world, adapter):
    vector = np.full(8, np.nan, np.float32)
    events = adapter.apply_label(5, "8", vector=vector)
    assert [(e["action"], e["reason"]) for e in events] == [("label_rejected", "non_finite_vector")]
    assert adapter.stats()["rejected_vectors"] == 1


@pytest.mark.parametrize(
    ("seq", "label", "vector", "reason"),
    [
        (5, "8", np.zeros(3), "wrong_dimension"),
        (5, "", None, "bad_label"),
        (5, "x" * 65, None, "bad_label"),
        (5, None, None, "bad_label"),
        (5, "unknown-3", None, "reserved_label"),  # the pseudo-labels' names
        (-1, "8", np.zeros(8), "bad_seq"),  # would pass for a sample the bundle shipped
        (True, "8", np.zeros(8), "bad_seq"),
    ],
)
def test_unusable_labels_are_rejected_with_their_reason(world, adapter, seq, label, vector, reason):
    before = world.knn.snapshot()
    events = adapter.apply_label(seq, label, vector=vector)
    assert [(e["action"], e["reason"]) for e in events] == [("label_rejected", reason)]
    assert adapter.stats()["rejected_labels"] == 1
    np.testing.assert_array_equal(world.knn.vectors, before.vectors)
    assert world.knn.labels.tolist() == before.labels.tolist()


def test_nan_frames_are_counted_not_quarantined(world, adapter):
    result = world.result(1, "8")
    result.vector = np.full(8, np.nan, np.float32)
    assert adapter.observe(result, drifting=True) == []
    assert adapter.stats()["rejected_vectors"] == 1 and len(adapter.quarantine) == 0
    result.vector = np.zeros(5, np.float32)
    with pytest.raises(ValueError, match="dimension 8"):
        adapter.observe(result, drifting=True)


def test_a_label_whose_sample_expired_while_waiting_is_reported(world, adapter, stream):
    stream(range(65))
    adapter.quarantine.add(adapter.quarantine.pop(60) or pytest.fail("60 should be quarantined"))
    assert adapter.apply_label(60, "7") == []  # queued behind the probation
    adapter.quarantine.remove([60])  # it left before the label could be applied
    for seq in range(65, 86):
        events = adapter.observe(world.result(seq, "0"), drifting=False)
    assert [(e["action"], e["seqs"], e["reason"]) for e in events] == [("label_rejected", [60], "unknown_seq")]


def test_learned_samples_keep_to_their_share_pseudo_labelled_ones_leave_first(world, adapter, stream):
    stream(range(85))  # two pseudo-labelled clusters: 8 samples
    share = int(CONFIG.learned_share * world.knn.max_samples)
    taught = [str(6 + i % 4) for i in range(60)]

    def counts() -> tuple[int, int, int]:
        origins = world.knn.origins
        return int(np.sum(origins == BUNDLE)), int(np.sum(origins >= 1000)), len(adapter.guesses)

    for i, cls in enumerate(taught[:34]):
        adapter.apply_label(1000 + i, cls, vector=world.draw(cls))
    assert share == 42 and counts() == (78, 34, 8)  # the share is full: 34 + 8
    for i, cls in enumerate(taught[34:], start=34):
        assert adapter.apply_label(1000 + i, cls, vector=world.draw(cls))[0]["action"] == "validated_label"
    assert counts() == (78, 42, 0)  # the guesses made room first, then the most redundant labels; the bundle kept 78
    assert len(world.knn) == 120
