import numpy as np
import pytest


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
    events = adapter.apply_label(7, "9", vector=world.draw("9"))
    assert events[0]["action"] == "validated_label" and events[0]["seqs"] == [7]
    assert world.knn.predict(world.draw("9"))[0] == "9"


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
    assert [(e["action"], e["label"], e["previous"], e["renamed"]) for e in events] == [
        ("relabel", "6", "unknown-1", 4)
    ]
    assert events[0]["seqs"] == [41, 47, 49, 55, 57, 59, 61, 63]  # every member of the cluster: all sixes
    labels = world.knn.labels.tolist()
    assert "unknown-1" not in labels and labels.count("6") == 4
    # another member of the same cluster: already renamed, nothing left to do
    assert adapter.apply_label(41, "6") == []
    assert adapter.pseudo.owner(41) == "6"


def test_unknown_seq_without_vector_is_reported(world, adapter):
    events = adapter.apply_label(12345, "8")
    assert [(e["action"], e["seqs"], e["reason"]) for e in events] == [("label_rejected", [12345], "unknown_seq")]
    assert adapter.stats()["rejected_labels"] == 1 and len(world.knn) == 120


def test_label_with_a_nan_vector_is_rejected(world, adapter):
    vector = np.full(8, np.nan, np.float32)
    events = adapter.apply_label(5, "8", vector=vector)
    assert [(e["action"], e["reason"]) for e in events] == [("label_rejected", "non_finite_vector")]
    assert adapter.stats()["rejected_vectors"] == 1


def test_wrong_dimension_and_bad_label_raise(world, adapter):
    with pytest.raises(ValueError, match=r"shape \(3,\), the reference set has dimension 8"):
        adapter.apply_label(5, "8", vector=np.zeros(3))
    with pytest.raises(ValueError, match="label must be"):
        adapter.apply_label(5, "")


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
