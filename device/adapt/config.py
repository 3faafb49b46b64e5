"""The adaptation's settings: one dataclass built from the `adaptation` section of the JSON config.

Distances are in units of the reference scale (a quantile of the reference set's nearest-neighbour
distances), so one configuration fits any PCA space. Ages and windows count frames, not seconds:
the device has no real-time clock, while frame sequence numbers survive reboots. The defaults
were tuned on the digits bundle with `python -m benchmarks.adaptation` seeds 0-9.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, fields
from typing import Any


@dataclass
class AdaptConfig:
    # quarantine
    quarantine_size: int = 256  # samples held at most; the oldest leaves first
    max_age: int = 150  # frames (sequence-number distance) a sample may wait in quarantine: a new class
    # fills it within tens of frames, while the rare outliers of known classes must not pile up into a cluster
    novelty_distance: float = 1.2  # flag a drifting frame whose nearest reference is farther (scale units)
    min_confidence: float = 0.9  # ... or whose kNN vote share is below this
    scale_quantile: float = 0.5  # quantile of reference nearest-neighbour distances that defines the scale
    # pseudo-labelling
    check_every: int = 2  # newly quarantined samples between two cluster searches
    min_cluster: int = 5  # members a cluster needs to be pseudo-labelled
    cluster_radius: float = 1.4  # radius around the cluster's medoid (scale units)
    stable_checks: int = 2  # consecutive searches that must find the same cluster
    stable_overlap: float = 0.5  # share of the previous candidate's members still in the cluster
    new_class_distance: float = 1.2  # median distance from members to a named class's samples making a cluster new
    agreement: float = 0.8  # kNN label share among members needed to extend a known class
    join_size: int = 4  # most central members of a cluster that join the reference set (purer than its rim)
    join_distance: float = 1.0  # ... of a new class, only those at least this far from the bundle's samples
    learned_share: float = 0.35  # share of the reference set learned samples may fill; beyond it the most redundant
    # learned sample leaves (a pseudo-labelled one first; an operator's label always joins): the bundle keeps the rest
    max_clusters: int = 32  # pseudo-labelled clusters remembered for relabelling by the operator
    # validated labels
    max_pending: int = 512  # validated labels waiting to be applied, at most
    # the vote of a learned sample, as a share of a bundle sample's: guards the known classes where new ones overlap
    label_weight: float = 0.65  # a sample an operator labelled (drift samples: often ambiguous, near known classes)
    pseudo_weight: float = 0.9  # a pseudo-labelled sample (only central cluster members, away from the bundle's)
    # snapshot and rollback
    window: int = 30  # drifting frames before an adaptation that form its baseline
    probation: int = 30  # frames watched after a pseudo-label (and any joining it meanwhile) before they are kept
    max_confidence_drop: float = 0.2  # roll back when mean confidence falls by more (absolute)
    max_agreement_drop: float = 0.2  # roll back when mean neighbour agreement falls by more (absolute)
    max_growth: float = 2.0  # roll back when quarantine inflow stays at or above this multiple of the baseline's
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
        _check("join_distance", self.join_distance, "a number >= 0", lambda v: _number(v) and v >= 0)
        for name in ("min_confidence", "agreement", "max_confidence_drop", "max_agreement_drop"):
            _check(name, getattr(self, name), "a number within [0, 1]", lambda v: _number(v) and 0 <= v <= 1)
        for name in ("label_weight", "pseudo_weight"):
            _check(name, getattr(self, name), "a number within (0, 1]", lambda v: _number(v) and 0 < v <= 1)
        for name in ("scale_quantile", "stable_overlap", "learned_share"):
            _check(name, getattr(self, name), "a number within (0, 1]", lambda v: _number(v) and 0 < v <= 1)
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
