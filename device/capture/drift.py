"""Drift injection for any source: `kind@N[:param]` changes the world from sample N on.

unseen@N            digits 6-9 (classes the factory model never saw) replace the stream
gradual-unseen@N:M  the chance of an unseen digit ramps linearly from 0 to 1 over M samples
noise@N[:sigma]     additive Gaussian sensor noise (default sigma 40 grey levels)
brightness@N[:f]    exposure multiplied by f (default 0.45: a lamp switched off)
blur@N[:sigma]      Gaussian defocus blur (default sigma 1.4 px)
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace

import numpy as np

from device.capture.base import Frame, Source
from device.capture.digits import DigitsSource
from device.errors import SourceError

UNSEEN_CLASSES = (6, 7, 8, 9)
KINDS = {"unseen": None, "gradual-unseen": 200.0, "noise": 40.0, "brightness": 0.45, "blur": 1.4}


@dataclass(frozen=True, slots=True)
class DriftSpec:
    """A parsed `kind@start[:param]` drift specification."""

    kind: str
    start: int
    param: float | None

    def __str__(self) -> str:
        return f"{self.kind}@{self.start}" + ("" if self.param is None else f":{self.param:g}")


def parse_drift(spec: str) -> DriftSpec:
    """Parse `kind@N[:param]`; raises `SourceError` naming the allowed kinds."""
    kind, _, rest = spec.partition("@")
    if kind not in KINDS or not rest:
        raise SourceError(f"bad drift spec {spec!r}: expected KIND@N[:PARAM], KIND one of {sorted(KINDS)}")
    start_s, _, param_s = rest.partition(":")
    try:
        start = int(start_s)
        param = float(param_s) if param_s else KINDS[kind]
    except ValueError as exc:
        raise SourceError(f"bad drift spec {spec!r}: N must be an integer and PARAM a number") from exc
    if start < 0 or (param is not None and param <= 0):
        raise SourceError(f"bad drift spec {spec!r}: N must be >= 0 and PARAM > 0")
    return DriftSpec(kind, start, param)


def _noise(sigma: float, rng: np.random.Generator) -> Callable[[np.ndarray], np.ndarray]:
    def apply(img: np.ndarray) -> np.ndarray:
        return np.clip(img + rng.normal(0.0, sigma, img.shape), 0, 255).astype(np.uint8)

    return apply


def _brightness(factor: float) -> Callable[[np.ndarray], np.ndarray]:
    return lambda img: np.clip(img.astype(np.float32) * factor, 0, 255).astype(np.uint8)


def _blur(sigma: float) -> Callable[[np.ndarray], np.ndarray]:
    from PIL import Image, ImageFilter  # here: a camera that injects no drift never loads PIL

    return lambda img: np.asarray(Image.fromarray(img).filter(ImageFilter.GaussianBlur(sigma)))


class DriftInjector:
    """Wraps a source and alters its frames from `spec.start` on; frames carry the kind in `tags`."""

    def __init__(self, source: Source, spec: DriftSpec, seed: int = 0) -> None:
        self.source = source
        self.spec = spec
        self._rng = np.random.default_rng([seed, 0xD71F7])
        self._unseen: DigitsSource | None = None
        if spec.kind.endswith("unseen"):
            self._unseen = DigitsSource(classes=UNSEEN_CLASSES, seed=seed + 7919)
        self._effect: Callable[[np.ndarray], np.ndarray] | None = None
        if spec.kind == "noise":
            self._effect = _noise(float(spec.param or 0), self._rng)
        elif spec.kind == "brightness":
            self._effect = _brightness(float(spec.param or 1))
        elif spec.kind == "blur":
            self._effect = _blur(float(spec.param or 1))

    def _shifted(self, frame: Frame) -> Frame:
        tags = (*frame.tags, self.spec.kind)
        if self._unseen is not None:
            new = self._unseen.draw()
            image = new.image
            if image.shape != frame.image.shape:
                from PIL import Image

                size = (frame.image.shape[1], frame.image.shape[0])
                image = np.asarray(Image.fromarray(image).resize(size, Image.Resampling.BILINEAR))
            return Frame(image, label=new.label, origin=new.origin, tags=tags)
        assert self._effect is not None
        return replace(frame, image=self._effect(frame.image), tags=tags)

    def _active(self, i: int) -> bool:
        if i < self.spec.start:
            return False
        if self.spec.kind != "gradual-unseen":
            return True
        ramp = float(self.spec.param or 1)
        return bool(self._rng.random() < min(1.0, (i - self.spec.start + 1) / ramp))

    def __iter__(self) -> Iterator[Frame]:
        for i, frame in enumerate(self.source):
            yield self._shifted(frame) if self._active(i) else frame

    def close(self) -> None:
        self.source.close()
