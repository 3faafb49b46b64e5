import json

import numpy as np
import pytest

from contract.bundle import load_bundle
from device.errors import BundleError
from device.pipeline.pipeline import Pipeline
from tests.utils.bundles import FACTORY, copy_factory, edit_meta, reseal


def test_factory_bundle_loads() -> None:
    bundle = load_bundle(FACTORY)
    assert bundle.name == "digits" and bundle.labels == ("0", "1", "2", "3", "4", "5")
    assert bundle.frame_size == (32, 32)
    assert bundle.meta["runtime"]["quantization"] == "full-int8"


def test_missing_model(tmp_path) -> None:
    b = copy_factory(tmp_path)
    (b / "model.tflite").unlink()
    with pytest.raises(BundleError, match=r"model.tflite: file is missing"):
        load_bundle(b)


def test_corrupt_model_fails_checksum(tmp_path) -> None:
    b = copy_factory(tmp_path)
    data = bytearray((b / "model.tflite").read_bytes())
    data[len(data) // 2] ^= 0xFF
    (b / "model.tflite").write_bytes(bytes(data))
    with pytest.raises(BundleError, match=r"model.tflite: sha256 .* does not match bundle.json"):
        load_bundle(b)


def test_garbage_model_with_matching_checksum_is_refused_by_the_runtime(tmp_path) -> None:
    b = copy_factory(tmp_path)
    (b / "model.tflite").write_bytes(b"\x00" * 1024)
    reseal(b)
    with pytest.raises(BundleError, match="the TFLite runtime cannot load the model"):
        Pipeline.from_bundle(b, detect=False)


def test_bundle_json_not_json(tmp_path) -> None:
    b = copy_factory(tmp_path)
    (b / "bundle.json").write_text("{")
    with pytest.raises(BundleError, match="bundle.json: not valid JSON"):
        load_bundle(b)


def test_output_shape_mismatch(tmp_path) -> None:
    b = copy_factory(tmp_path)
    meta = json.loads((b / "bundle.json").read_text())
    meta["outputs"]["features"]["shape"] = [1, 128]
    edit_meta(b, outputs=meta["outputs"])
    with pytest.raises(BundleError, match=r"features tensor .* in the model, bundle.json says int8\[1, 128\]"):
        Pipeline.from_bundle(b, detect=False)


def test_unknown_output_name(tmp_path) -> None:
    b = copy_factory(tmp_path)
    meta = json.loads((b / "bundle.json").read_text())
    meta["outputs"]["probabilities"]["name"] = "softmax_please"
    edit_meta(b, outputs=meta["outputs"])
    with pytest.raises(BundleError, match="names probabilities tensor 'softmax_please'; the model has"):
        Pipeline.from_bundle(b, detect=False)


def test_missing_role(tmp_path) -> None:
    b = copy_factory(tmp_path)
    meta = json.loads((b / "bundle.json").read_text())
    del meta["outputs"]["features"]
    edit_meta(b, outputs=meta["outputs"])
    with pytest.raises(BundleError, match=r"outputs must name the roles \['probabilities', 'features'\]"):
        load_bundle(b)


def test_labels_do_not_match_outputs(tmp_path) -> None:
    b = copy_factory(tmp_path)
    (b / "labels.txt").write_text("0\n1\n2\n")
    reseal(b)
    with pytest.raises(BundleError, match="labels.txt has 3 labels, the probabilities output has 6"):
        load_bundle(b)


def test_knn_state_of_another_dimension(tmp_path) -> None:
    b = copy_factory(tmp_path)
    np.savez(b / "knn_state.npz", vectors=np.zeros((20, 7), np.float32), labels=np.array(["0"] * 20))
    reseal(b)
    with pytest.raises(BundleError, match="kNN state has dimension 7, the transform gives 16"):
        Pipeline.from_bundle(b, detect=False)


def test_transform_of_another_input_dimension(tmp_path) -> None:
    b = copy_factory(tmp_path)
    np.savez(b / "transform.npz", mean=np.zeros(10), scale=np.ones(10), components=np.eye(10)[:4],
             pca_mean=np.zeros(10))
    reseal(b)
    with pytest.raises(BundleError, match="transform.npz expects 10-d features, the model gives 64"):
        Pipeline.from_bundle(b, detect=False)
