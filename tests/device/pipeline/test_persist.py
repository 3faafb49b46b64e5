import numpy as np

from device.capture import open_source
from device.pipeline.persist import load_state, save_state, state_dir
from device.pipeline.pipeline import Pipeline
from tests.utils.bundles import FACTORY


def _feed(pipeline: Pipeline, frames, start: int = 0) -> list:
    return [pipeline.process(f, seq) for seq, f in enumerate(frames, start=start)]


def test_state_survives_a_restart(tmp_path) -> None:
    frames = list(open_source("digits", seed=9, limit=400, drift="unseen@200"))
    first = Pipeline.from_bundle(FACTORY)
    _feed(first, frames[:320])
    save_state(tmp_path, first, 320)

    resumed = Pipeline.from_bundle(FACTORY)
    assert load_state(tmp_path, resumed) == 320
    assert resumed.monitor is not None and first.monitor is not None
    assert resumed.monitor.drifting == first.monitor.drifting
    np.testing.assert_array_equal(resumed.classifier.vectors, first.classifier.vectors)
    # the same frames give the same answers as an uninterrupted run
    rest_a = _feed(first, frames[320:], start=320)
    rest_b = _feed(resumed, frames[320:], start=320)
    assert [(r.label, r.drift) for r in rest_a] == [(r.label, r.drift) for r in rest_b]


def test_unusable_state_is_ignored_with_a_warning(tmp_path, caplog) -> None:
    pipeline = Pipeline.from_bundle(FACTORY)
    directory = state_dir(tmp_path, pipeline)
    directory.mkdir(parents=True)
    (directory / "monitor.json").write_text("{broken")
    (directory / "adapt_state.npz").write_bytes(b"junk")
    (directory / "frames.json").write_text('{"next_seq": 17}')
    assert load_state(tmp_path, pipeline) == 17
    assert "starting the detectors afresh" in caplog.text
    assert "starting the adapter afresh" in caplog.text
    assert len(pipeline.classifier) > 0
