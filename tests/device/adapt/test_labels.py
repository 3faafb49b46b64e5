import numpy as np
import pytest

from device.adapt import LabelQueue, ValidatedLabel
from device.adapt.labels import check_label


def test_queue_is_bounded_oldest_first():
    queue = LabelQueue(capacity=2)
    for seq in range(3):
        queue.put(ValidatedLabel(seq, "7"))
    assert queue.dropped == 1
    assert [item.seq for item in queue.take_all()] == [1, 2]
    assert len(queue) == 0


def test_queue_round_trips_with_and_without_vectors():
    queue = LabelQueue(capacity=4)
    queue.put(ValidatedLabel(1, "7", np.array([1.0, 2.0], np.float32)))
    queue.put(ValidatedLabel(2, "unknown-1"))
    other = LabelQueue(capacity=4)
    other.load_arrays(queue.to_arrays(dim=2))
    first, second = other.take_all()
    assert (first.seq, first.label, second.seq, second.label, second.vector) == (1, "7", 2, "unknown-1", None)
    np.testing.assert_array_equal(first.vector, [1.0, 2.0])


@pytest.mark.parametrize("label", ["", "  ", "x" * 65, 7, None])
def test_bad_labels_are_refused(label):
    with pytest.raises(ValueError, match="label must be a non-blank string of at most 64 characters"):
        check_label(label)
