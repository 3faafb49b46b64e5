"""The one interface every drift detector shares: `update(value)`, `drift_detected`, `_reset()`.

State is a flat dict of the private attributes, so a `Monitor` can save it to JSON and resume.
"""

from __future__ import annotations

import abc
from collections import deque
from collections.abc import Sequence
from typing import Any

_MODES = ("up", "down", "both")


class DriftDetector(abc.ABC):
    """A streaming change detector: O(1) or O(window) per `update`, no labels needed."""

    threshold: float  # the alarm level of `statistic`

    def __init__(self) -> None:
        self._reset()

    def _reset(self) -> None:
        """Forget everything seen so far (called after an alarm, river style)."""
        self._drift_detected = False

    @property
    def drift_detected(self) -> bool:
        """Whether the last `update` raised an alarm."""
        return self._drift_detected

    @property
    @abc.abstractmethod
    def statistic(self) -> float:
        """The current test statistic, comparable to `threshold`."""

    @abc.abstractmethod
    def update(self, value: Any) -> None:
        """Feed one observation."""

    def learn(self, classes: Sequence[str]) -> None:  # noqa: B027 - most detectors do not read labels
        """The classes the device's classifier knows now (after an adaptation); only label detectors care."""

    def state(self) -> dict[str, Any]:
        """The private state as JSON-friendly values (deques become lists)."""
        return {
            key: list(value) if isinstance(value, deque) else value
            for key, value in vars(self).items()
            if key.startswith("_")
        }

    def saved_state(self) -> dict[str, Any]:
        """What the periodic save writes: `state()`, or a state a detector would rather resume from (see
        `FeatureCVM`); `restore` takes it like `state()`."""
        return self.state()

    def restore(self, state: dict[str, Any]) -> None:
        """Load a `state()` written by a detector of the same class and hyperparameters."""
        current = {key: value for key, value in vars(self).items() if key.startswith("_")}
        if set(state) != set(current):
            raise ValueError(f"state keys {sorted(state)} do not match {sorted(current)}")
        for key, value in state.items():
            old = current[key]
            if isinstance(old, deque):
                value = deque(value, maxlen=old.maxlen)
            elif isinstance(old, float):
                value = float(value)
            setattr(self, key, value)


def check_mode(mode: str) -> str:
    if mode not in _MODES:
        raise ValueError(f"mode must be one of {_MODES}, got {mode!r}")
    return mode


def check_positive(name: str, value: float) -> float:
    if not value > 0:
        raise ValueError(f"{name} must be > 0, got {value!r}")
    return float(value)
