import numpy as np
import pytest

from device.adapt import Quarantine, QuarantinedSample


def sample(seq: int, dim: int = 3) -> QuarantinedSample:
    return QuarantinedSample(seq, np.full(dim, seq, np.float32), "0", 0.5, 2.0, 100.0 + seq)


def test_count_bound_drops_the_oldest():
    q = Quarantine(capacity=3, max_age=100)
    for seq in range(5):
        q.add(sample(seq))
    assert [s.seq for s in q] == [2, 3, 4]
    assert len(q) == 3 and q.dropped == 2


def test_age_bound_counts_frames():
    q = Quarantine(capacity=10, max_age=5)
    for seq in (0, 2, 4, 6):
        q.add(sample(seq))
    assert q.expire(7) == 1  # seq 0 is 7 frames old, 2 is exactly 5: kept
    assert [s.seq for s in q] == [2, 4, 6]
    assert q.expire(11) == 2
    assert [s.seq for s in q] == [6] and q.dropped == 3


def test_pop_and_remove_by_seq():
    q = Quarantine(capacity=10, max_age=100)
    for seq in range(4):
        q.add(sample(seq))
    popped = q.pop(1)
    assert popped is not None and popped.seq == 1
    assert q.pop(1) is None
    q.remove([0, 3, 99])
    assert [s.seq for s in q] == [2] and 2 in q and 0 not in q
    assert q.dropped == 0  # explained samples are not counted as dropped


def test_stacked_and_arrays_round_trip():
    q = Quarantine(capacity=10, max_age=100)
    for seq in (5, 7):
        q.add(sample(seq))
    seqs, vectors = q.stacked()
    assert seqs.tolist() == [5, 7] and vectors.shape == (2, 3)
    other = Quarantine(capacity=10, max_age=100)
    other.load_arrays(q.to_arrays())
    assert [(s.seq, s.label, s.confidence, s.distance, s.time) for s in other] == [
        (s.seq, s.label, s.confidence, s.distance, s.time) for s in q
    ]
    np.testing.assert_array_equal(other.stacked()[1], vectors)


def test_empty_quarantine_round_trips():
    other = Quarantine(capacity=2, max_age=2)
    other.load_arrays(Quarantine(capacity=2, max_age=2).to_arrays())
    assert len(other) == 0


def test_rejects_a_bad_bound():
    with pytest.raises(ValueError, match="capacity and max_age must be >= 1"):
        Quarantine(capacity=0, max_age=1)
