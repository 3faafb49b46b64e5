"""A pipeline loaded to replace another frees the old interpreter and transform while it builds its own, and builds
the old ones again when the new bundle cannot be loaded: the old pipeline then classifies as before."""

import numpy as np
import pytest

from device.capture import open_source
from device.errors import BundleError
from device.pipeline.pipeline import Pipeline
from tests.utils.bundles import FACTORY, ROOT, copy_factory, reseal

V2 = ROOT / "benchmarks" / "fixtures" / "digits-v2"


def _frames(n: int) -> list:
    source = open_source("digits", size=(32, 32), realtime=False)
    frames = [frame for frame, _ in zip(source, range(n), strict=False)]
    source.close()
    return frames


def _outputs(pipeline: Pipeline, frames: list) -> list[np.ndarray]:
    """What the interpreter gives for each frame (probabilities and features) and the transform makes of it."""
    return [np.concatenate([probs, features, pipeline.transform(features)])
            for probs, features in (pipeline.extract(f) for f in frames)]


def test_the_old_interpreter_and_transform_are_freed_once_the_new_bundle_is_verified() -> None:
    old = Pipeline.from_bundle(FACTORY)
    new = Pipeline.from_bundle(V2, replacing=old)
    assert old.extractor._interp is None and old.transform._weight.size == 0 and new.bundle.version == "2.0.0"
    assert len(_outputs(new, _frames(3))) == 3


def test_a_corrupt_bundle_is_refused_before_the_old_interpreter_is_touched(tmp_path) -> None:
    old = Pipeline.from_bundle(FACTORY)
    interpreter = old.extractor._interp
    broken = copy_factory(tmp_path)
    (broken / "model.tflite").write_bytes(b"broken")
    with pytest.raises(BundleError, match="does not match bundle.json"):
        Pipeline.from_bundle(broken, replacing=old)
    assert old.extractor._interp is interpreter


@pytest.mark.parametrize("breakage", ["model", "transform"])
def test_a_bundle_that_fails_to_load_leaves_the_old_pipeline_working_as_before(tmp_path, breakage) -> None:
    frames = _frames(8)
    old = Pipeline.from_bundle(FACTORY)
    before = _outputs(old, frames)
    broken = copy_factory(tmp_path)
    if breakage == "model":
        (broken / "model.tflite").write_bytes(b"\x00" * 1024)
    else:
        np.savez(broken / "transform.npz", mean=np.zeros(10), scale=np.ones(10), components=np.eye(10)[:4],
                 pca_mean=np.zeros(10))
    reseal(broken)
    with pytest.raises(BundleError):
        Pipeline.from_bundle(broken, replacing=old)
    assert old.extractor._interp is not None
    assert all(np.array_equal(a, b) for a, b in zip(_outputs(old, frames), before, strict=True))
    assert len({old.process(f, i).label for i, f in enumerate(frames)}) >= 1  # and the whole pipeline runs


@pytest.mark.parametrize("name", ["model.tflite", "transform.npz"])
@pytest.mark.parametrize(("what", "reason"), [("changed", ".*changed since it was loaded"), ("gone", "")])
def test_an_old_file_that_changed_or_went_is_not_loaded_again(tmp_path, name, what, reason) -> None:
    """The old model is rebuilt only from the files it was loaded from; otherwise the service ends, as documented."""
    bundle = copy_factory(tmp_path / "a")
    old = Pipeline.from_bundle(bundle)
    broken = copy_factory(tmp_path / "b")
    (broken / "model.tflite").write_bytes(b"\x00" * 1024)
    reseal(broken)
    if what == "changed":
        (bundle / name).write_bytes((V2 / name).read_bytes())
    else:
        (bundle / name).unlink()
    with pytest.raises(RuntimeError, match="the running model cannot be loaded again: " + reason):
        Pipeline.from_bundle(broken, replacing=old)
