"""On-device adaptation: quarantine drift samples, pseudo-label stable clusters, apply operator labels,
and roll the kNN reference set back when an adaptation makes things worse.
"""

from device.adapt.adapter import Adapter, Event
from device.adapt.labels import LabelQueue, ValidatedLabel
from device.adapt.probation import Probation
from device.adapt.pseudolabel import NEW_CLASS_PREFIX, Cluster, PseudoLabeler, find_cluster, reference_scale
from device.adapt.quarantine import Quarantine, QuarantinedSample
from device.adapt.store import STATE_FILE
from device.config import AdaptConfig

__all__ = [
    "NEW_CLASS_PREFIX",
    "STATE_FILE",
    "AdaptConfig",
    "Adapter",
    "Cluster",
    "Event",
    "LabelQueue",
    "Probation",
    "PseudoLabeler",
    "Quarantine",
    "QuarantinedSample",
    "ValidatedLabel",
    "find_cluster",
    "reference_scale",
]
