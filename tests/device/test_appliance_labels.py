"""Operator labels the appliance must not learn from: each gets its outcome in the outbox, none touches the kNN."""

import numpy as np
import pytest

from device.appliance import Appliance
from device.config import parse_config
from tests.utils.bundles import copy_factory, edit_meta


@pytest.fixture
def appliance(tmp_path):
    bundle = copy_factory(tmp_path)
    # the model this device switched to: it may learn 6-9, nothing else
    edit_meta(bundle, version="2.0.0", learnable_labels=["6", "7", "8", "9"])
    config = parse_config(
        {
            "device": {"data_dir": str(tmp_path), "health_port": 0},
            "camera": {"source": "digits", "fps": 100, "seed": 3},
            "feature_extractor": {"bundle": str(bundle)},
            "sync": {"server_url": ""},
        }
    )
    appliance = Appliance(config)
    yield appliance
    appliance.outbox.close()


def outcomes(appliance: Appliance) -> list[tuple[str, str, list[int]]]:
    assert appliance.outbox.flush(10)
    events = [r["data"] for r in appliance.outbox.records("adaptation")]
    return [(e["action"], e["reason"], e["seqs"]) for e in events]


def test_labels_the_device_must_not_learn_are_refused_and_the_reference_set_is_untouched(appliance):
    knn = appliance.pipeline.classifier
    before = knn.snapshot()
    vector = np.full(knn.dim, 3.0, dtype=np.float32).tolist()
    appliance.labels.put(
        [
            # seen by the model before the switch: its vector lies in that model's feature space
            {"id": 1, "frame_seq": 40, "label": "7", "vector": vector, "predicted": "3", "model_version": "1.0.0"},
            {"id": 2, "frame_seq": 41, "label": "cat", "vector": vector, "model_version": "2.0.0"},  # not learnable
            {"id": 3, "frame_seq": 42, "label": "unknown-2", "vector": vector, "model_version": "2.0.0"},
            {"id": 4, "frame_seq": 43, "label": "8", "vector": ["a", "b"], "model_version": "2.0.0"},
            {"id": 5, "frame_seq": 44, "label": "8", "vector": [1.0, 2.0], "model_version": "2.0.0"},
            {"id": 6, "frame_seq": 45, "label": "8", "vector": None, "model_version": "2.0.0"},  # never seen here
        ]
    )
    appliance.labels.apply()
    assert outcomes(appliance) == [
        ("label_rejected", "other_model", [40]),
        ("label_rejected", "forbidden_label", [41]),
        ("label_rejected", "reserved_label", [42]),
        ("label_rejected", "bad_vector", [43]),
        ("label_rejected", "wrong_dimension", [44]),
        ("label_rejected", "unknown_seq", [45]),
    ]
    after = knn.snapshot()
    for field in ("vectors", "labels", "origins", "weights"):
        np.testing.assert_array_equal(getattr(after, field), getattr(before, field))


def test_a_label_this_model_may_learn_is_applied(appliance):
    knn = appliance.pipeline.classifier
    vector = np.full(knn.dim, 3.0, dtype=np.float32).tolist()
    appliance.labels.put([{"id": 1, "frame_seq": 40, "label": "7", "vector": vector, "model_version": "2.0.0"}])
    appliance.labels.apply()
    assert outcomes(appliance) == [("validated_label", "operator", [40])]
    position = knn.find(40)
    assert position is not None and knn.labels[position] == "7"
