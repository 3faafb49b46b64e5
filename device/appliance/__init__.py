"""The appliance (`tinylcm run`): `Appliance` wires one small part per concern, each a module of this package.

`health` (the /healthz snapshot, the heartbeat's health), `desired` (desired.json for the updater),
`connection` (provisioning, then sync), `labels` (operator labels into the adapter), `drift` (label-based
drift), `reload` (hot bundle switch), `updates` (the updater's report and transitions), `metrics`.
"""

from device.appliance.appliance import HEALTH_WINDOW, RELOAD_CHECK_EVERY, SAVE_EVERY, Appliance
from device.appliance.reload import bundle_path

__all__ = ["HEALTH_WINDOW", "RELOAD_CHECK_EVERY", "SAVE_EVERY", "Appliance", "bundle_path"]
