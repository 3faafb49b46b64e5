"""Probation of an adaptation: the kNN snapshot taken before it and the verdict on whether to keep it.

A baseline of confidence, neighbour agreement and quarantine inflow is kept over the last drifting
frames (running sums, O(1) per frame). After an adaptation the same means are taken over the next
`length` frames; a collapse of either score, or an inflow that keeps growing, means roll back.

Confidence and agreement are judged on the frames voted to a named class (a bundle's or an operator's,
not a pseudo-label) when more than a third of the frames of both spans were: before an adaptation the
frames of a new class are often voted to a known one with confidence, and after it they split their votes
with the new pseudo-label or go to it, which must not read as a collapse (when the new classes take more
than half of the frames at once, as several clusters named in one search do, 13 named frames of 30 still
judge well, where judging every frame rolled good clusters back). When at most a third of either span was
voted to named classes, every frame is judged, as a too small remainder would judge on noise. Inflow counts
every frame.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Any

from device.knn import Snapshot

NAMED_SHARE = 1 / 3  # judge on the named frames when both spans have more than this share of them

Health = dict[str, float]
# means over a span of frames: "confidence", "agreement" and "inflow" over its "frames"; "named_confidence" and
# "named_agreement" over its "named" frames, those voted to a named class (1.0 when there were none)


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
    named_confidence: float = 0.0  # sums over those of them voted to a named class
    named_agreement: float = 0.0
    named: int = 0

    def health(self) -> Health:
        sums = (self.confidence, self.agreement, self.inflow, self.named_confidence, self.named_agreement, self.named)
        return _health(*sums, frames=self.frames)


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
        self._recent: deque[tuple[float, float, float, bool]] = deque(maxlen=window)
        self._sums = [0.0] * 6  # confidence, agreement, inflow; confidence and agreement of named frames, named

    @property
    def active(self) -> bool:
        return self.watch is not None

    @property
    def done(self) -> bool:
        return self.watch is not None and self.watch.frames >= self.length

    def record(self, confidence: float, agreement: float, flagged: bool, drifting: bool, named: bool = True) -> None:
        """Account for one frame; `named`: voted to a named class, not a pseudo-label. O(1)."""
        if self.watch is not None:
            w = self.watch
            w.confidence += confidence
            w.agreement += agreement
            w.inflow += float(flagged)
            w.frames += 1
            if named:
                w.named_confidence += confidence
                w.named_agreement += agreement
                w.named += 1
        if not drifting:
            return
        if len(self._recent) == self._recent.maxlen:
            self._sums = [s - o for s, o in zip(self._sums, _terms(*self._recent[0]), strict=True)]
        row = (confidence, agreement, float(flagged), named)
        self._recent.append(row)
        self._sums = [s + r for s, r in zip(self._sums, _terms(*row), strict=True)]

    def baseline(self) -> Health:
        """Means over the recent drifting frames (a neutral baseline when there are none)."""
        n = len(self._recent)
        if n == 0:
            return {
                **dict.fromkeys(("confidence", "agreement", "inflow", "named_confidence", "named_agreement"), 1.0),
                "frames": 0.0,
                "named": 0.0,
            }
        c, a, f, nc, na, named = self._sums
        return _health(c, a, f, nc, na, round(named), frames=n)

    def start(self, snapshot: Snapshot, events: list[dict[str, Any]]) -> None:
        self.watch = Watch(snapshot=snapshot, events=events, baseline=self.baseline())

    def verdict(self) -> str | None:
        """Why the watched adaptation must be rolled back, or None to keep it."""
        assert self.watch is not None
        before, after = self.watch.baseline, self.watch.health()
        enough_named = all(NAMED_SHARE * span["frames"] < span["named"] for span in (before, after))
        prefix = "named_" if enough_named else ""
        if before[prefix + "confidence"] - after[prefix + "confidence"] > self.max_confidence_drop:
            return "confidence_collapse"
        if before[prefix + "agreement"] - after[prefix + "agreement"] > self.max_agreement_drop:
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
                "named_confidence": w.named_confidence,
                "named_agreement": w.named_agreement,
                "named": w.named,
            }
        return {"recent": [list(r) for r in self._recent], "watch": watch}

    def load_state(self, state: dict[str, Any], snapshot: Snapshot | None) -> None:
        """Take back what `to_state` gave. State saved before the frames voted to a named class were told
        apart (rows of three, a watch and baseline without them) counts every frame as named."""
        self.watch = None
        self._recent.clear()
        self._sums = [0.0] * 6
        for row in state["recent"]:
            self.record(float(row[0]), float(row[1]), bool(row[2]), True, bool(row[3]) if len(row) > 3 else True)
        watch = state["watch"]
        if watch is not None and snapshot is not None:
            if "event" in watch:  # saved before one search could commit several clusters
                watch = {**{k: v for k, v in watch.items() if k != "event"}, "events": [watch["event"]]}
            watch = {**_all_named(watch), "baseline": _all_named(watch["baseline"])}
            self.watch = Watch(snapshot=snapshot, **watch)


def _terms(confidence: float, agreement: float, flagged: float, named: bool) -> tuple[float, ...]:
    """What one frame of the baseline window adds to its sums."""
    n = float(named)
    return (confidence, agreement, flagged, confidence * n, agreement * n, n)


def _health(
    confidence: float,
    agreement: float,
    inflow: float,
    named_confidence: float,
    named_agreement: float,
    named: int,
    *,
    frames: int,
) -> Health:
    """Means of the sums over a span of `frames` frames, `named` of them voted to a named class."""
    return {
        "confidence": confidence / max(frames, 1),
        "agreement": agreement / max(frames, 1),
        "inflow": inflow / max(frames, 1),
        "frames": float(frames),
        "named_confidence": named_confidence / named if named else 1.0,
        "named_agreement": named_agreement / named if named else 1.0,
        "named": float(named),
    }


def _all_named(saved: dict[str, Any]) -> dict[str, Any]:
    """A watch or a baseline saved before named frames were counted apart: every frame counted as named."""
    return {
        "named_confidence": saved["confidence"],
        "named_agreement": saved["agreement"],
        "named": saved["frames"],
        **saved,
    }
