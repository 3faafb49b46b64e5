"""Capture sources behind one interface: `camera`, `dir:PATH`, `digits`, with optional drift injection."""

from __future__ import annotations

import itertools
from collections.abc import Iterator

from device.capture.base import Frame, Source
from device.capture.drift import DriftInjector, DriftSpec, parse_drift
from device.errors import SourceError

__all__ = ["Frame", "Source", "DriftSpec", "open_source", "parse_drift"]


class _Limited:
    def __init__(self, source: Source, limit: int) -> None:
        self.source, self.limit = source, limit

    def __iter__(self) -> Iterator[Frame]:
        return itertools.islice(iter(self.source), self.limit)

    def close(self) -> None:
        self.source.close()


def open_source(
    spec: str,
    *,
    drift: str | None = None,
    seed: int = 0,
    limit: int | None = None,
    size: tuple[int, int] = (32, 32),
    fps: float = 5.0,
) -> Source:
    """Open `camera`, `dir:PATH` or `digits` for frames of `size` (width, height)."""
    source: Source
    if spec == "camera":
        from device.capture.camera import CameraSource

        source = CameraSource(size, fps)
    elif spec.startswith("dir:"):
        from device.capture.directory import DirectorySource

        source = DirectorySource(spec[4:], size)
    elif spec == "digits":
        from device.capture.digits import FRAME_SIZE, DigitsSource

        if size != (FRAME_SIZE, FRAME_SIZE):
            raise SourceError(f"the digits source renders {FRAME_SIZE}x{FRAME_SIZE} frames, the model wants {size}")
        source = DigitsSource(seed=seed)
    else:
        raise SourceError(f"unknown source {spec!r}: use camera, dir:PATH or digits")
    if drift:
        source = DriftInjector(source, parse_drift(drift), seed=seed)
    if limit is not None:
        source = _Limited(source, limit)
    return source
