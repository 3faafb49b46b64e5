"""What every capture source yields: frames of one fixed shape, with an optional true label."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np


@dataclass(frozen=True, slots=True)
class Frame:
    """One captured image (H, W, 3 uint8 RGB) and what the source knows about it."""

    image: np.ndarray
    label: str | None = None  # ground truth when the source has it (replay, synthetic)
    origin: str = ""  # file name, camera timestamp or synthetic index
    tags: tuple[str, ...] = field(default=())  # injected drift kinds active on this frame


class Source(Protocol):
    """A stream of frames; iteration ends when the source is exhausted or closed."""

    def __iter__(self) -> Iterator[Frame]: ...

    def close(self) -> None: ...
