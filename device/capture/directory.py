"""Replay images from a folder, in sorted order; `dir/<label>/<image>` gives each frame its label."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from device.capture.base import Frame
from device.errors import FrameError, SourceError

log = logging.getLogger(__name__)
EXTENSIONS = {".png", ".jpg", ".jpeg", ".bmp", ".ppm", ".webp"}


def read_frame(path: Path, size: tuple[int, int] | None) -> np.ndarray:
    """Decode one RGB image of `size` (width, height); anything else is a `FrameError`."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as img:
            img.load()
            if img.mode != "RGB":
                raise FrameError(f"image mode is {img.mode}, expected RGB", path)
            if size is not None and img.size != size:
                raise FrameError(f"image is {img.size[0]}x{img.size[1]}, expected {size[0]}x{size[1]}", path)
            return np.asarray(img, dtype=np.uint8)
    except (OSError, UnidentifiedImageError, SyntaxError) as exc:
        raise FrameError(f"cannot decode image: {exc}", path) from exc


class DirectorySource:
    """Frames from image files under `root`; bad files are logged, counted in `skipped`, and passed over."""

    def __init__(self, root: str | Path, size: tuple[int, int] | None = None) -> None:
        self.root = Path(root)
        if not self.root.is_dir():
            raise SourceError("not a directory", self.root)
        self.files = sorted(p for p in self.root.rglob("*") if p.suffix.lower() in EXTENSIONS and p.is_file())
        if not self.files:
            raise SourceError(f"no images ({', '.join(sorted(EXTENSIONS))}) in the folder", self.root)
        self.size = size
        self.skipped = 0
        self._closed = False

    def __iter__(self) -> Iterator[Frame]:
        for path in self.files:
            if self._closed:
                return
            try:
                image = read_frame(path, self.size)
            except FrameError as exc:
                self.skipped += 1
                log.warning("skipping frame: %s", exc)
                continue
            label = path.parent.name if path.parent != self.root else None
            yield Frame(image, label=label, origin=str(path.relative_to(self.root)))

    def close(self) -> None:
        self._closed = True
