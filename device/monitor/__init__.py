"""Label-free drift detection: one detector per module, fed by the classifier's single neighbour search.

`build_monitor(configs, reference)` turns the config's `drift_detectors` and the bundle's
`drift_reference.json` into a `Monitor`; `build_reference` writes that reference at training time.
"""

from device.monitor.monitor import DriftSignal, Monitor
from device.monitor.reference import build_reference
from device.monitor.registry import DEFAULT_DETECTORS, KINDS, build_monitor

__all__ = ["DEFAULT_DETECTORS", "KINDS", "DriftSignal", "Monitor", "build_monitor", "build_reference"]
