"""Probation of an adaptation: the kNN snapshot taken before it and the verdict on whether to keep it.

A baseline of confidence, neighbour agreement and quarantine inflow is kept over the last drifting
frames (running sums, O(1) per frame). After an adaptation the same means are taken over the next
`length` frames; a collapse of either score, or an inflow that keeps growing, means roll back.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Any

from device.knn import Snapshot

Health = dict[str, float]  # {"confidence", "agreement", "inflow", "frames"}: means over a span of frames


@dataclass
class Watch:
    """An adaptation on probation: what it was, the state before it, and the frames seen since."""

    snapshot: Snapshot
    events: list[dict[str, Any]]  # the adaptation events being watched (the clusters of one search)
    baseline: Health
    confidence: float = 0.0  # sums over the frames seen since the adaptation
    agreement: float = 0.0
    inflow: float = 0.0
    frames: int = 0

    def health(self) -> Health:
        n = max(self.frames, 1)
        return {
            "confidence": self.confidence / n,
            "agreement": self.agreement / n,
            "inflow": self.inflow / n,
            "frames": float(self.frames),
        }


class Probation:
    """Keeps the baseline window and at most one adaptation under watch."""

    def __init__(
        self, window: int, length: int, max_confidence_drop: float, max_agreement_drop: float, max_growth: float
    ) -> None:
        self.length = length
        self.max_confidence_drop = max_confidence_drop
        self.max_agreement_drop = max_agreement_drop
        self.max_growth = max_growth
        self.watch: Watch | None = None
        self._recent: deque[tuple[float, float, float]] = deque(maxlen=window)
        self._sums = [0.0, 0.0, 0.0]

    @property
    def active(self) -> bool:
        return self.watch is not None

    @property
    def done(self) -> bool:
        return self.watch is not None and self.watch.frames >= self.length

    def record(self, confidence: float, agreement: float, flagged: bool, drifting: bool) -> None:
        """Account for one frame; O(1)."""
        if self.watch is not None:
            self.watch.confidence += confidence
            self.watch.agreement += agreement
            self.watch.inflow += float(flagged)
            self.watch.frames += 1
        if not drifting:
            return
        row = (confidence, agreement, float(flagged))
        if len(self._recent) == self._recent.maxlen:
            old = self._recent[0]
            self._sums = [s - o for s, o in zip(self._sums, old, strict=True)]
        self._recent.append(row)
        self._sums = [s + r for s, r in zip(self._sums, row, strict=True)]

    def baseline(self) -> Health:
        """Means over the recent drifting frames (a neutral baseline when there are none)."""
        n = len(self._recent)
        if n == 0:
            return {"confidence": 1.0, "agreement": 1.0, "inflow": 1.0, "frames": 0.0}
        c, a, f = (s / n for s in self._sums)
        return {"confidence": c, "agreement": a, "inflow": f, "frames": float(n)}

    def start(self, snapshot: Snapshot, events: list[dict[str, Any]]) -> None:
        self.watch = Watch(snapshot=snapshot, events=events, baseline=self.baseline())

    def verdict(self) -> str | None:
        """Why the watched adaptation must be rolled back, or None to keep it."""
        assert self.watch is not None
        before, after = self.watch.baseline, self.watch.health()
        if before["confidence"] - after["confidence"] > self.max_confidence_drop:
            return "confidence_collapse"
        if before["agreement"] - after["agreement"] > self.max_agreement_drop:
            return "agreement_collapse"
        if after["inflow"] > 0 and after["inflow"] >= self.max_growth * before["inflow"]:
            return "quarantine_growth"
        return None

    def finish(self) -> Watch:
        """End the watch and hand it back."""
        assert self.watch is not None
        watch, self.watch = self.watch, None
        return watch

    def to_state(self) -> dict[str, Any]:
        """The watch without its snapshot (saved as arrays) and the baseline window, as JSON."""
        watch = None
        if self.watch is not None:
            w = self.watch
            watch = {
                "events": w.events,
                "baseline": w.baseline,
                "confidence": w.confidence,
                "agreement": w.agreement,
                "inflow": w.inflow,
                "frames": w.frames,
            }
        return {"recent": [list(r) for r in self._recent], "watch": watch}

    def load_state(self, state: dict[str, Any], snapshot: Snapshot | None) -> None:
        self.watch = None
        self._recent.clear()
        self._sums = [0.0, 0.0, 0.0]
        for row in state["recent"]:
            self.record(float(row[0]), float(row[1]), bool(row[2]), True)
        watch = state["watch"]
        if watch is not None and snapshot is not None:
            if "event" in watch:  # saved before one search could commit several clusters
                watch = {**{k: v for k, v in watch.items() if k != "event"}, "events": [watch["event"]]}
            self.watch = Watch(snapshot=snapshot, **watch)
