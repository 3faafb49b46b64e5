"""The adaptation's settings: one dataclass built from the `adaptation` section of the JSON config.

Distances are in units of the reference scale (a quantile of the reference set's nearest-neighbour
distances), so one configuration fits any PCA space. Ages and windows count frames, not seconds:
the device has no real-time clock, while frame sequence numbers survive reboots. The defaults
were tuned on the digits bundle with `python -m benchmarks.adaptation` seeds 0-2.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, fields
from typing import Any


@dataclass
class AdaptConfig:
    # quarantine
    quarantine_size: int = 256  # samples held at most; the oldest leaves first
    max_age: int = 900  # frames (sequence-number distance) a sample may wait in quarantine
    novelty_distance: float = 1.2  # flag a drifting frame whose nearest reference is farther (scale units)
    min_confidence: float = 0.9  # ... or whose kNN vote share is below this
    scale_quantile: float = 0.5  # quantile of reference nearest-neighbour distances that defines the scale
    # pseudo-labelling
    check_every: int = 5  # newly quarantined samples between two cluster searches
    min_cluster: int = 10  # members a cluster needs to be pseudo-labelled
    cluster_radius: float = 1.4  # radius around the cluster's medoid (scale units)
    stable_checks: int = 2  # consecutive searches that must find the same cluster
    stable_overlap: float = 0.5  # share of the previous candidate's members still in the cluster
    new_class_distance: float = 1.2  # median member-to-reference distance above which a cluster is new
    agreement: float = 0.8  # kNN label share among members needed to extend a known class
    join_size: int = 10  # most central members of a cluster that join the reference set
    max_clusters: int = 32  # pseudo-labelled clusters remembered for relabelling by the operator
    # validated labels
    max_pending: int = 512  # validated labels waiting to be applied, at most
    # snapshot and rollback
    window: int = 30  # drifting frames before an adaptation that form its baseline
    probation: int = 30  # frames watched after a pseudo-label before it is kept
    max_confidence_drop: float = 0.2  # roll back when mean confidence falls by more (absolute)
    max_agreement_drop: float = 0.2  # roll back when mean neighbour agreement falls by more (absolute)
    max_growth: float = 1.2  # roll back when quarantine inflow stays at or above this multiple of the baseline's
    cooldown: int = 100  # frames without pseudo-labelling after a rollback

    def __post_init__(self) -> None:
        for name in (
            "quarantine_size",
            "max_age",
            "check_every",
            "min_cluster",
            "stable_checks",
            "join_size",
            "max_clusters",
            "max_pending",
            "window",
            "probation",
        ):
            _check(name, getattr(self, name), "an integer >= 1", lambda v: isinstance(v, int) and v >= 1)
        _check("cooldown", self.cooldown, "an integer >= 0", lambda v: isinstance(v, int) and v >= 0)
        for name in ("novelty_distance", "cluster_radius", "new_class_distance", "max_growth"):
            _check(name, getattr(self, name), "a number > 0", lambda v: _number(v) and v > 0)
        for name in ("min_confidence", "agreement", "max_confidence_drop", "max_agreement_drop"):
            _check(name, getattr(self, name), "a number within [0, 1]", lambda v: _number(v) and 0 <= v <= 1)
        for name in ("scale_quantile", "stable_overlap"):
            _check(name, getattr(self, name), "a number within (0, 1]", lambda v: _number(v) and 0 < v <= 1)
        if self.join_size > self.min_cluster:
            raise ValueError(f"join_size must be <= min_cluster ({self.min_cluster}), got {self.join_size}")
        if self.min_cluster > self.quarantine_size:
            raise ValueError(f"min_cluster must be <= quarantine_size ({self.quarantine_size}), got {self.min_cluster}")

    def to_dict(self) -> dict[str, int | float]:
        """The settings as a JSON object (round-trips through `AdaptConfig(**d)`)."""
        return {f.name: getattr(self, f.name) for f in fields(self)}


def _number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and value == value


def _check(name: str, value: Any, allowed: str, ok: Callable[[Any], bool]) -> None:
    if isinstance(value, bool) or not ok(value):
        raise ValueError(f"adaptation.{name} must be {allowed}, got {value!r}")
