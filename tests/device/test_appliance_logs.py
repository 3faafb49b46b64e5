"""The appliance says a state once, then only its changes."""

from __future__ import annotations

import logging

import pytest

from device.appliance import Appliance
from device.config import parse_config


def test_a_missing_bundle_is_reported_once_not_on_every_reload_check(tmp_path, caplog: pytest.LogCaptureFixture
                                                                     ) -> None:
    config = parse_config({"device": {"data_dir": str(tmp_path), "health_port": 0},
                           "camera": {"source": "digits"}, "feature_extractor": {"bundle": "models/current"}})
    with caplog.at_level(logging.WARNING, logger="device.appliance"):
        appliance = Appliance(config)
        for seq in range(25, 250, 25):  # the frame loop looks every RELOAD_CHECK_EVERY frames
            appliance.bundle.check(seq)
    missing = [r for r in caplog.records if "does not exist" in r.getMessage()]
    assert [r.getMessage() for r in missing] == [
        f"bundle {tmp_path / 'models' / 'current'} does not exist; starting on the factory bundle"]
    assert appliance.pipeline.bundle.version == "1.0.0"
    appliance.outbox.close()
