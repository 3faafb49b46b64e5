"""Capture sources behind one interface: `camera`, `dir:PATH`, `digits`, with optional drift injection."""

from __future__ import annotations

import itertools
import time
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


class _Paced:
    """At most `fps` frames per second from a source that would otherwise run flat out."""

    def __init__(self, source: Source, fps: float) -> None:
        self.source, self.period = source, 1.0 / fps

    def __iter__(self) -> Iterator[Frame]:
        due = time.monotonic()
        for frame in self.source:
            due += self.period
            delay = due - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            else:
                due = time.monotonic()  # behind: do not burst to catch up
            yield frame

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
    realtime: bool = False,
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
        from device.capture.digits import DigitsSource

        source = DigitsSource(seed=seed, size=size)
    else:
        raise SourceError(f"unknown source {spec!r}: use camera, dir:PATH or digits")
    if drift:
        source = DriftInjector(source, parse_drift(drift), seed=seed)
    if realtime and spec != "camera":
        source = _Paced(source, fps)
    if limit is not None:
        source = _Limited(source, limit)
    return source
