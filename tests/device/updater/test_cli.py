import argparse
import json
from pathlib import Path

import pytest

from device.config import UpdaterConfig
from device.updater.cli import add_arguments, config_from, settings_from
from device.updater.settings import ProbationGates, UpdaterSettings
from device.updater.watchdog import Watchdog


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    return parser.parse_args(list(argv))


def write(tmp_path: Path, doc: dict) -> str:
    path = tmp_path / "device.json"
    path.write_text(json.dumps(doc))
    return str(path)


def test_the_updater_section_defaults_are_the_updaters_own() -> None:
    import inspect

    defaults = UpdaterConfig()
    assert defaults.poll_interval_s == UpdaterSettings.poll_interval_s
    assert defaults.probation_s == ProbationGates.window_s
    assert defaults.stale_s == inspect.signature(Watchdog).parameters["stale_after_s"].default


def test_without_a_config_the_settings_are_the_former_defaults() -> None:
    settings = settings_from(parse(), {})
    assert settings.data_dir == Path("/data") and settings.server_url is None and settings.device_type is None
    assert settings.health_url == "http://127.0.0.1:8321/healthz"
    assert settings.poll_interval_s == 10.0 and settings.gates.window_s == 300.0
    assert config_from(parse()).updater == UpdaterConfig()


def test_the_config_files_updater_section_is_read(tmp_path) -> None:
    path = write(tmp_path, {"device": {"health_port": 9}, "sync": {"server_url": "http://sync"},
                            "updater": {"server_url": "http://tuf", "device_type": "raspberrypi3",
                                        "poll_interval_s": 3, "probation_s": 40, "stale_s": 30, "service": "main",
                                        "docker_socket": "/run/docker.sock", "compose_project": "app",
                                        "inference_cmd": "tinylcm run"}})
    config = config_from(parse("--config", path))
    settings = settings_from(parse("--config", path), {"BALENA_DEVICE_TYPE": "other"}, config)
    assert settings.server_url == "http://tuf" and settings.device_type == "raspberrypi3"
    assert settings.poll_interval_s == 3.0 and settings.gates.window_s == 40.0
    assert settings.health_url == "http://127.0.0.1:9/healthz"
    assert config.updater.stale_s == 30.0 and config.updater.service == "main"
    assert (config.updater.docker_socket, config.updater.compose_project) == ("/run/docker.sock", "app")
    assert config.updater.inference_cmd == "tinylcm run"


def test_every_flag_overrides_the_config_file(tmp_path) -> None:
    path = write(tmp_path, {"updater": {"server_url": "http://tuf", "health_url": "http://h/healthz",
                                        "device_type": "a", "probation_s": 40, "stale_s": 30, "service": "main",
                                        "docker_socket": "/a.sock", "compose_project": "app", "inference_cmd": "x"}})
    args = parse("--config", path, "--server", "http://flag", "--health-url", "http://f/healthz", "--device-type",
                 "b", "--probation-s", "5", "--stale-s", "7", "--service", "svc", "--docker-socket", "/b.sock",
                 "--compose-project", "proj", "--inference-cmd", "y", "--data-dir", str(tmp_path))
    config = config_from(args)
    assert config.updater == UpdaterConfig(server_url="http://flag", health_url="http://f/healthz", device_type="b",
                                           probation_s=5.0, stale_s=7.0, service="svc", docker_socket="/b.sock",
                                           compose_project="proj", inference_cmd="y")
    settings = settings_from(args, {}, config)
    assert (settings.server_url, settings.health_url, settings.device_type) == ("http://flag", "http://f/healthz", "b")
    assert settings.gates.window_s == 5.0 and settings.data_dir == tmp_path


def test_the_sync_server_and_the_environment_remain_fallbacks(tmp_path) -> None:
    path = write(tmp_path, {"sync": {"server_url": "http://sync"}})
    settings = settings_from(parse("--config", path), {"BALENA_DEVICE_TYPE": "raspberrypi0-2w-64"})
    assert settings.server_url == "http://sync" and settings.device_type == "raspberrypi0-2w-64"


def test_a_bad_flag_value_is_refused() -> None:
    with pytest.raises(ValueError, match="updater.probation_s must be > 0"):
        config_from(parse("--probation-s", "0"))
