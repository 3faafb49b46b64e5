"""The bundle the appliance starts on, and the switch when the updater flips models/current."""

import logging
import shutil

from device.appliance.reload import BundleWatch, bundle_path
from device.bundle import factory_bundle
from device.capture import open_source
from device.config import parse_config
from device.pipeline.pipeline import Pipeline
from device.runner import Runner
from tests.utils.bundles import FACTORY, ROOT


def _flip(current, target) -> None:
    tmp = current.with_name("current.tmp")
    tmp.symlink_to(target)
    tmp.replace(current)


def test_a_missing_bundle_falls_back_to_the_factory_one_said_only_when_asked(tmp_path, caplog) -> None:
    config = parse_config({"device": {"data_dir": str(tmp_path)}, "feature_extractor": {"bundle": "models/x"}})
    with caplog.at_level(logging.WARNING, logger="device.appliance"):
        assert bundle_path(config, announce=False) == factory_bundle()
        assert caplog.records == []
        assert bundle_path(config) == factory_bundle()
    assert [r.getMessage() for r in caplog.records] == [
        f"bundle {tmp_path / 'models' / 'x'} does not exist; starting on the factory bundle"]


def test_the_runner_switches_to_the_flipped_bundle_and_stays_when_it_is_broken(tmp_path, caplog) -> None:
    models = tmp_path / "models"
    shutil.copytree(FACTORY, models / "slot-a")
    shutil.copytree(ROOT / "benchmarks" / "fixtures" / "digits-v2", models / "slot-b")
    (models / "current").symlink_to(models / "slot-a")
    config = parse_config({"device": {"data_dir": str(tmp_path)}, "feature_extractor": {"bundle": "models/current"}})
    start = bundle_path(config).resolve()
    runner = Runner(Pipeline.from_bundle(start, config), window=10)
    watch = BundleWatch(config, runner, start, tmp_path / "state")
    first = runner.pipeline
    watch.check(25)
    assert runner.pipeline is first

    runner.stats.latencies.extend([9.0] * 10)
    _flip(models / "current", models / "slot-b")
    watch.check(50)
    assert runner.pipeline.bundle.version == "2.0.0" and watch.bundle_dir == (models / "slot-b").resolve()
    assert list(runner.stats.latencies) == [] and watch.error == ""
    assert (tmp_path / "state" / "digits-1.0.0" / "frames.json").exists()  # the old model's state was saved

    (models / "slot-a" / "model.tflite").write_bytes(b"broken")
    _flip(models / "current", models / "slot-a")
    with caplog.at_level(logging.ERROR, logger="device.appliance"):
        watch.check(75)
        watch.check(100)
    assert runner.pipeline.bundle.version == "2.0.0" and "model.tflite" in watch.error
    assert len([r for r in caplog.records if "cannot switch" in r.getMessage()]) == 1  # said once, not per look


def test_no_switch_while_the_configured_bundle_is_still_missing(tmp_path) -> None:
    config = parse_config({"device": {"data_dir": str(tmp_path)}, "feature_extractor": {"bundle": "models/current"}})
    start = bundle_path(config, announce=False).resolve()
    runner = Runner(Pipeline.from_bundle(start, config))
    first = runner.pipeline
    BundleWatch(config, runner, start, tmp_path / "state").check(25)
    assert runner.pipeline is first


def test_a_switch_frees_the_old_interpreter_and_a_bundle_that_failed_is_tried_again_beside_it(tmp_path) -> None:
    from tests.utils.bundles import reseal

    models = tmp_path / "models"
    shutil.copytree(FACTORY, models / "slot-a")
    shutil.copytree(FACTORY, models / "slot-b")
    (models / "slot-b" / "model.tflite").write_bytes(b"\x00" * 1024)  # sealed: only the runtime refuses it
    reseal(models / "slot-b")
    (models / "current").symlink_to(models / "slot-a")
    config = parse_config({"device": {"data_dir": str(tmp_path)}, "feature_extractor": {"bundle": "models/current"}})
    start = bundle_path(config).resolve()
    runner = Runner(Pipeline.from_bundle(start, config))
    watch = BundleWatch(config, runner, start, tmp_path / "state")
    first = runner.pipeline

    _flip(models / "current", models / "slot-b")
    watch.check(25)  # freed for the attempt, built again when it failed
    rebuilt = first.extractor._interp
    assert runner.pipeline is first and rebuilt is not None and "cannot load the model" in watch.error
    watch.check(50)  # the same bundle again: loaded beside the running interpreter, which is left alone
    assert runner.pipeline is first and first.extractor._interp is rebuilt

    _flip(models / "current", models / "slot-a")
    shutil.rmtree(models / "slot-b")
    shutil.copytree(FACTORY, models / "slot-b")
    _flip(models / "current", models / "slot-b")
    watch.check(75)
    assert runner.pipeline is not first and first.extractor._interp is None and watch.error == ""
    assert runner.step(next(iter(open_source("digits", size=(32, 32), realtime=False))), 75) is not None
