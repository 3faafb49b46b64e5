"""Synthetic camera: scikit-learn's 8x8 digits rendered as small RGB camera frames.

The same `render` is used to train the factory model (scripts/train_model.py) and to replay
the held-out split on the device, so both see one distribution. The held-out split ships as
`device/data/digits_heldout.npz` (images 0..255 uint8, labels); scikit-learn is not needed here.
"""

from __future__ import annotations

from collections.abc import Iterator
from importlib import resources
from pathlib import Path

import numpy as np

from device.capture.base import Frame
from device.errors import SourceError

FRAME_SIZE = 32  # frames are FRAME_SIZE x FRAME_SIZE x 3, the factory model's input
_SCALE = 4  # 8x8 glyph -> 32x32 canvas, drawn at 24x24 with a margin for shifts
_GLYPH = 24
_PAPER = np.array([236.0, 231.0, 222.0])  # warm white background, as under indoor light
_INK = np.array([38.0, 42.0, 60.0])  # dark blue-black ink


def _upscale(glyph: np.ndarray, size: int) -> np.ndarray:
    """Bilinear upscale of a 2-D float array to (size, size)."""
    n = glyph.shape[0]
    pos = (np.arange(size) + 0.5) * n / size - 0.5
    lo = np.clip(np.floor(pos).astype(int), 0, n - 1)
    hi = np.clip(lo + 1, 0, n - 1)
    w = np.clip(pos - lo, 0.0, 1.0)
    rows = glyph[lo] * (1 - w)[:, None] + glyph[hi] * w[:, None]
    return rows[:, lo] * (1 - w)[None, :] + rows[:, hi] * w[None, :]


def render(glyph: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Draw one 8x8 glyph (uint8 0..255 ink intensity) as a 32x32 RGB uint8 camera frame.

    Each call jitters position (±2 px), exposure (±8 %) and adds sensor noise (σ = 3),
    so replaying one sample twice gives two plausible, different frames.
    """
    ink = _upscale(glyph.astype(np.float64) / 255.0, _GLYPH)
    canvas = np.zeros((FRAME_SIZE, FRAME_SIZE))
    margin = (FRAME_SIZE - _GLYPH) // 2
    dy, dx = rng.integers(-2, 3, size=2)
    canvas[margin + dy : margin + dy + _GLYPH, margin + dx : margin + dx + _GLYPH] = ink
    rgb = _PAPER * (1 - canvas[..., None]) + _INK * canvas[..., None]
    rgb *= rng.uniform(0.92, 1.08)
    rgb += rng.normal(0.0, 3.0, size=rgb.shape)
    return np.clip(rgb, 0, 255).astype(np.uint8)


def load_heldout(path: str | Path | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Return the held-out glyphs (n, 8, 8) uint8 and their integer labels (n,)."""
    try:
        if path is None:
            ref = resources.files("device") / "data" / "digits_heldout.npz"
            with resources.as_file(ref) as p, np.load(p) as npz:
                return npz["images"], npz["labels"]
        with np.load(path) as npz:
            return npz["images"], npz["labels"]
    except (OSError, KeyError, ValueError) as exc:
        raise SourceError(f"cannot read the held-out digits: {exc}", path) from exc


class DigitsSource:
    """An endless (or `limit`-long) seeded stream of held-out digits from `classes`.

    Frames are rendered at 32x32; another `size` (width, height) scales them, as a camera's ISP would.
    """

    def __init__(
        self,
        classes: tuple[int, ...] = (0, 1, 2, 3, 4, 5),
        seed: int = 0,
        limit: int | None = None,
        heldout: tuple[np.ndarray, np.ndarray] | None = None,
        size: tuple[int, int] = (FRAME_SIZE, FRAME_SIZE),
    ) -> None:
        images, labels = heldout if heldout is not None else load_heldout()
        mask = np.isin(labels, classes)
        if not mask.any():
            raise SourceError(f"the held-out digits have no samples of classes {classes}")
        self.classes = classes
        self.seed = seed
        self.limit = limit
        self.size = size
        self._images = images[mask]
        self._labels = labels[mask]
        self._rng = np.random.default_rng(seed)
        self._closed = False

    def draw(self) -> Frame:
        """Render one random held-out sample of this source's classes."""
        i = int(self._rng.integers(len(self._labels)))
        image = render(self._images[i], self._rng)
        if self.size != (FRAME_SIZE, FRAME_SIZE):
            from PIL import Image  # only to scale: PIL stays out of a process that never draws a scaled digit

            image = np.asarray(Image.fromarray(image).resize(self.size, Image.Resampling.BILINEAR))
        return Frame(image, label=str(self._labels[i]), origin=f"digits:{i}")

    def __iter__(self) -> Iterator[Frame]:
        n = 0
        while not self._closed and (self.limit is None or n < self.limit):
            yield self.draw()
            n += 1

    def close(self) -> None:
        self._closed = True
