import io

import numpy as np
import pytest
from PIL import Image

from device.capture import open_source, parse_drift
from device.capture.digits import DigitsSource
from device.errors import SourceError


def _png(path, size=(32, 32), mode="RGB") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new(mode, size, color=128 if mode == "L" else (120, 130, 140)).save(path)


def test_digits_stream_is_seeded_and_labelled() -> None:
    a = [(f.label, f.image.sum()) for f in open_source("digits", seed=3, limit=10)]
    b = [(f.label, f.image.sum()) for f in open_source("digits", seed=3, limit=10)]
    assert a == b and len(a) == 10
    assert {lab for lab, _ in a} <= {"0", "1", "2", "3", "4", "5"}


def test_digits_frames_look_like_camera_frames() -> None:
    frame = next(iter(DigitsSource(seed=0)))
    assert frame.image.shape == (32, 32, 3) and frame.image.dtype == np.uint8
    assert frame.image.mean() > 120  # light paper, dark ink


@pytest.mark.parametrize("kind", ["noise", "brightness", "blur"])
def test_image_drift_changes_frames_from_start(kind: str) -> None:
    base = list(open_source("digits", seed=1, limit=6))
    drifted = list(open_source("digits", seed=1, limit=6, drift=f"{kind}@3"))
    for i, (a, b) in enumerate(zip(base, drifted, strict=True)):
        assert a.label == b.label
        assert (kind in b.tags) == (i >= 3)
        assert np.array_equal(a.image, b.image) == (i < 3)


def test_unseen_drift_brings_classes_6_to_9() -> None:
    labels = [f.label for f in open_source("digits", seed=2, limit=60, drift="unseen@30")]
    assert set(labels[:30]) <= set("012345")
    assert set(labels[30:]) <= set("6789")


def test_gradual_unseen_ramps() -> None:
    frames = list(open_source("digits", seed=4, limit=400, drift="gradual-unseen@100:200"))
    unseen = np.array([f.label in set("6789") for f in frames])
    assert not unseen[:100].any()
    assert 0.1 < unseen[100:200].mean() < unseen[200:300].mean() < 0.95
    assert unseen[300:].all()


@pytest.mark.parametrize("spec", ["sideways@3", "noise", "noise@x", "noise@-1", "blur@5:0", "unseen@"])
def test_bad_drift_spec(spec: str) -> None:
    with pytest.raises(SourceError, match="bad drift spec"):
        parse_drift(spec)


def test_unknown_source() -> None:
    with pytest.raises(SourceError, match="unknown source 'webcam'"):
        open_source("webcam")


def test_directory_in_order_with_labels(tmp_path) -> None:
    _png(tmp_path / "cats" / "b.png")
    _png(tmp_path / "cats" / "a.png")
    _png(tmp_path / "dogs" / "c.png")
    frames = list(open_source(f"dir:{tmp_path}"))
    assert [f.origin for f in frames] == ["cats/a.png", "cats/b.png", "dogs/c.png"]
    assert [f.label for f in frames] == ["cats", "cats", "dogs"]


def test_directory_skips_bad_frames_and_counts_them(tmp_path, caplog) -> None:
    _png(tmp_path / "1-good.png")
    _png(tmp_path / "2-big.png", size=(64, 48))
    _png(tmp_path / "3-grey.png", mode="L")
    buf = io.BytesIO()
    Image.new("RGB", (32, 32), (10, 200, 30)).save(buf, format="JPEG")
    (tmp_path / "4-truncated.jpg").write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])
    (tmp_path / "5-text.png").write_text("not an image")
    _png(tmp_path / "6-good.png")
    source = open_source(f"dir:{tmp_path}")
    frames = list(source)
    assert [f.origin for f in frames] == ["1-good.png", "6-good.png"]
    assert source.skipped == 4  # type: ignore[attr-defined]
    text = caplog.text
    assert "image is 64x48, expected 32x32" in text
    assert "image mode is L, expected RGB" in text
    assert "4-truncated.jpg" in text and "5-text.png" in text


def test_empty_directory(tmp_path) -> None:
    with pytest.raises(SourceError, match="no images"):
        open_source(f"dir:{tmp_path}")


def test_missing_directory(tmp_path) -> None:
    with pytest.raises(SourceError, match="not a directory"):
        open_source(f"dir:{tmp_path / 'nope'}")


def test_camera_without_picamera2_is_a_clear_error() -> None:
    with pytest.raises(SourceError, match="needs picamera2"):
        open_source("camera")


def test_digits_scale_to_the_model_input_like_an_isp() -> None:
    frames = list(open_source("digits", seed=3, limit=2, size=(224, 160)))
    assert frames[0].image.shape == (160, 224, 3) and frames[0].image.dtype == np.uint8
    assert [f.label for f in frames] == [f.label for f in open_source("digits", seed=3, limit=2)]


def test_paced_synthetic_source_keeps_to_the_frame_rate(monkeypatch) -> None:
    import device.capture as capture

    clock = {"now": 0.0}
    sleeps: list[float] = []
    monkeypatch.setattr(capture.time, "monotonic", lambda: clock["now"])

    def sleep(seconds: float) -> None:
        sleeps.append(round(seconds, 6))
        clock["now"] += seconds

    monkeypatch.setattr(capture.time, "sleep", sleep)
    frames = list(open_source("digits", limit=5, fps=10, realtime=True))
    assert len(frames) == 5
    assert sleeps == [0.1] * 5  # one frame every 100 ms
