"""The adapter's state on disk: labels at the width of their longest string, loaded back at the width saved."""

import json
from pathlib import Path

import numpy as np
import pytest

from device.adapt.store import REFERENCE_GLOB, STATE_FILE, VERSION, AdapterState, load_state, save_state
from device.errors import StateError
from device.state import save_npz_atomic


def _state() -> AdapterState:
    rng = np.random.default_rng(0)
    labels = np.asarray(["3", "7", "unknown-12", "7"] * 50, dtype="<U64")
    arrays = {
        "knn_vectors": rng.normal(size=(200, 16)).astype(np.float32),
        "knn_labels": labels,
        "knn_origins": np.zeros(200, dtype=np.int64),
        "knn_weights": np.ones(200, dtype=np.float32),
        "q_seq": np.arange(3, dtype=np.int64),
        "q_label": np.asarray(["Grüße", "", "9"], dtype="<U64"),
        "p_label": np.asarray([], dtype="<U64"),  # empty: kept as it is
    }
    return AdapterState(arrays, {"dim": 16, "seq": 41})


def _on_disk(path: Path) -> dict[str, np.ndarray]:
    with np.load(path, allow_pickle=False) as npz:
        return {key: npz[key] for key in npz.files}


def test_labels_are_written_narrow_and_loaded_back_at_their_width(tmp_path: Path) -> None:
    state = _state()
    save_state(state, tmp_path)
    [reference] = tmp_path.glob(REFERENCE_GLOB)
    assert _on_disk(reference)["knn_labels"].dtype == np.dtype("<U10")  # "unknown-12": 40 bytes a label, not 256
    assert _on_disk(tmp_path / STATE_FILE)["q_label"].dtype == np.dtype("<U5")
    loaded = load_state(tmp_path, 16)
    assert loaded is not None and set(loaded.arrays) == set(state.arrays)
    for key, array in state.arrays.items():
        assert loaded.arrays[key].dtype == array.dtype, key
        np.testing.assert_array_equal(loaded.arrays[key], array)
    assert {k: loaded.meta[k] for k in ("version", "dim", "seq")} == {"version": VERSION, "dim": 16, "seq": 41}
    assert "text_dtypes" not in loaded.meta


def test_state_written_at_full_width_still_loads(tmp_path: Path) -> None:
    state = _state()
    save_state(state, tmp_path)
    arrays = _on_disk(tmp_path / STATE_FILE)
    meta = json.loads(str(arrays.pop("meta")))
    del meta["text_dtypes"]  # as written before labels were narrowed
    arrays["q_label"] = state.arrays["q_label"]
    save_npz_atomic(tmp_path / STATE_FILE, meta=np.asarray(json.dumps(meta)), **arrays)
    loaded = load_state(tmp_path, 16)
    assert loaded is not None and loaded.arrays["q_label"].dtype == np.dtype("<U64")
    assert loaded.arrays["knn_labels"].dtype == np.dtype("<U10")  # the narrow reference, with no width to restore


@pytest.mark.parametrize("dtypes", [{"q_seq": "<U64"}, {"q_label": "<i8"}, {"missing": "<U64"}, {"q_label": "bad"}])
def test_a_width_that_does_not_fit_is_a_state_error(tmp_path: Path, dtypes: dict) -> None:
    save_state(_state(), tmp_path)
    arrays = _on_disk(tmp_path / STATE_FILE)
    meta = json.loads(str(arrays.pop("meta")))
    meta["text_dtypes"] = dtypes
    save_npz_atomic(tmp_path / STATE_FILE, meta=np.asarray(json.dumps(meta)), **arrays)
    with pytest.raises(StateError, match="text arrays"):
        load_state(tmp_path, 16)
