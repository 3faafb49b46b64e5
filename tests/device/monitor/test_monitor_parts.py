"""The monitor's periodic save: large detector values in content-named files, rewritten only when they change."""

import json
from pathlib import Path

import numpy as np

from device.monitor import build_monitor
from device.monitor.monitor import PART_KEY, Monitor, _load_part, _save_part


def _feed(monitor: Monitor, reference: dict, make_result, frames: range, seed: int) -> None:
    rng = np.random.default_rng(seed)
    mean = np.asarray(reference["features"]["mean"], dtype=np.float32)
    std = np.asarray(reference["features"]["std"], dtype=np.float32)
    for seq in frames:
        vector = (mean + std * rng.normal(size=mean.shape)).astype(np.float32)
        monitor.update(make_result(seq, knn=float(rng.normal()), vector=vector, label=str(rng.choice(["a", "b", "c"]))))


def _parts(directory: Path) -> dict[str, int]:
    """Part files beside monitor.json and their inode numbers (a rewrite replaces the inode)."""
    return {p.name: p.stat().st_ino for p in directory.iterdir() if p.name != "monitor.json"}


def test_a_learned_reference_is_written_once_and_resumes_exactly(reference: dict, make_result, tmp_path) -> None:
    monitor = build_monitor(None, reference)
    _feed(monitor, reference, make_result, range(400), seed=1)  # the feature-CVM reference is learned by now
    monitor.save(tmp_path / "monitor.json")
    first = _parts(tmp_path)
    saved = json.loads((tmp_path / "monitor.json").read_text())["watches"]["feature_cvm"]["detector"]
    assert saved["_residuals"] == {PART_KEY: next(name for name in first if name.endswith(".npy"))}

    _feed(monitor, reference, make_result, range(400, 420), seed=2)
    (tmp_path / "monitor.0123456789abcdef.npy").write_bytes(b"")  # a part an earlier save no longer names
    monitor.save(tmp_path / "monitor.json")
    state = json.loads((tmp_path / "monitor.json").read_text())["watches"]
    assert state["feature_cvm"]["detector"]["_residuals"] == saved["_residuals"]
    assert state["feature_cvm"]["detector"]["_ranks"] != saved["_ranks"]  # small and changed: saved inline
    assert _parts(tmp_path) == first  # the unchanged reference was not rewritten; the stale part is gone

    resumed = build_monitor(None, reference)
    resumed.load(tmp_path / "monitor.json")
    assert {w.name: w.state() for w in resumed.watches} == {w.name: w.state() for w in monitor.watches}


def test_state_saved_as_one_json_file_still_loads(reference: dict, make_result, tmp_path) -> None:
    monitor = build_monitor(None, reference)
    _feed(monitor, reference, make_result, range(400), seed=3)
    watches = {w.name: w.state() for w in monitor.watches}
    state = {"version": 1, "fingerprint": monitor.fingerprint, "skipped": monitor.skipped, "watches": watches}
    (tmp_path / "monitor.json").write_text(json.dumps(state, indent=2, sort_keys=True))  # the earlier format
    resumed = build_monitor(None, reference)
    resumed.load(tmp_path / "monitor.json")
    assert {w.name: w.state() for w in resumed.watches} == watches


def test_a_part_loads_back_exactly_with_its_types(tmp_path) -> None:
    path, parts = tmp_path / "monitor.json", set[str]()
    values = {"floats": [[0.1, -0.0, 1e300]] * 400, "ints": list(range(1000)), "mixed": [1, 2.5] * 1000,
              "bools": [True, False] * 600, "small": [0.5] * 10}
    saved = {key: _save_part(path, value, parts) for key, value in values.items()}
    assert saved["small"] == values["small"]  # inline
    assert {key: Path(v[PART_KEY]).suffix for key, v in saved.items() if key != "small"} == {
        "floats": ".npy", "ints": ".npy", "mixed": ".json", "bools": ".json"}  # numpy would make 1 -> 1.0, True -> 1
    for key, value in saved.items():
        assert json.dumps(_load_part(path, value)) == json.dumps(values[key])  # 1 stays 1, 1.0 stays 1.0


def test_a_reference_still_being_learned_is_left_out_of_the_save(reference: dict, make_result, tmp_path) -> None:
    monitor = build_monitor(None, reference)
    _feed(monitor, reference, make_result, range(250), seed=4)  # feature-CVM: centroids, 100 of 200 residuals
    monitor.save(tmp_path / "monitor.json")
    saved = json.loads((tmp_path / "monitor.json").read_text())["watches"]["feature_cvm"]
    assert saved["detector"]["_residuals"] == [] and not [p for p in _parts(tmp_path) if p.endswith(".npy")]
    resumed = build_monitor(None, reference)
    resumed.load(tmp_path / "monitor.json")
    before, after = (next(w for w in m.watches if w.name == "feature_cvm") for m in (monitor, resumed))
    assert after.seen == before.seen == 250 and after.detector.state()["_sums"] == before.detector.state()["_sums"]
    assert after.detector.state()["_residuals"] == []  # learned again from the next frames


def test_integers_go_to_a_part_in_the_narrowest_type_and_load_back_exactly(tmp_path) -> None:
    path, parts = tmp_path / "monitor.json", set[str]()
    cases = [([0, 200] * 300, np.uint8), ([-1, 100] * 300, np.int8), ([0, 60000] * 300, np.uint16),
             ([-(2**40), 1] * 300, np.int64)]
    for values, dtype in cases:
        saved = _save_part(path, values, parts)
        assert np.load(tmp_path / saved[PART_KEY]).dtype == dtype
        assert json.dumps(_load_part(path, saved)) == json.dumps(values)


def test_floats_that_are_all_float32_values_go_to_a_float32_part(tmp_path) -> None:
    path, parts = tmp_path / "monitor.json", set[str]()
    cases = [([[0.5, -0.0, 3.0, float(np.float32(0.1))]] * 300, np.float32), ([[0.1, 0.5]] * 300, np.float64),
             ([1e300, 0.5] * 300, np.float64), ([float("nan"), 0.5] * 300, np.float64)]
    for values, dtype in cases:
        saved = _save_part(path, values, parts)
        assert np.load(tmp_path / saved[PART_KEY]).dtype == dtype
        assert json.dumps(_load_part(path, saved)) == json.dumps(values)  # -0.0 and NaN included


def test_the_learned_feature_cvm_reference_is_saved_as_float32(reference: dict, make_result, tmp_path) -> None:
    monitor = build_monitor(None, reference)
    _feed(monitor, reference, make_result, range(400), seed=5)
    monitor.save(tmp_path / "monitor.json")
    saved = json.loads((tmp_path / "monitor.json").read_text())["watches"]["feature_cvm"]["detector"]
    residuals = np.load(tmp_path / saved["_residuals"][PART_KEY])
    assert residuals.dtype == np.float32 and residuals.shape == (200, 4)
    resumed = build_monitor(None, reference)
    resumed.load(tmp_path / "monitor.json")
    assert {w.name: w.state() for w in resumed.watches} == {w.name: w.state() for w in monitor.watches}
