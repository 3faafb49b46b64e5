import json

import pytest

from device.config import load_config, parse_config
from device.errors import ConfigError


def test_empty_config_has_defaults() -> None:
    cfg = parse_config({})
    assert cfg.adaptive_classifier.k == 5
    assert cfg.camera.source == "camera"


def test_ints_accepted_for_floats(tmp_path) -> None:
    path = tmp_path / "c.json"
    path.write_text(json.dumps({"camera": {"fps": 10}, "adaptive_classifier": {"k": 3, "metric": "cosine"}}))
    cfg = load_config(path)
    assert cfg.camera.fps == 10.0 and cfg.adaptive_classifier.metric == "cosine"


@pytest.mark.parametrize(
    ("doc", "match"),
    [
        ({"classifier": {}}, r"unknown key\(s\) \['classifier'\]"),
        ({"adaptive_classifier": {"kk": 3}}, r"unknown key\(s\) \['kk'\]; allowed: adaptive_classifier: type, k"),
        ({"adaptive_classifier": {"k": "five"}}, r"key 'adaptive_classifier.k' must be int, got 'five'"),
        ({"camera": {"fps": "fast"}}, r"key 'camera.fps' must be float"),
        ({"camera": {"fps": 0}}, r"camera.fps must be > 0"),
        ({"adaptive_classifier": {"metric": "l3"}}, r"metric must be one of"),
        ({"outbox": {"jpeg_quality": 100}}, r"jpeg_quality must be within"),
        ([1, 2], "must be a JSON object"),
    ],
)
def test_bad_config_names_key_and_file(tmp_path, doc, match) -> None:
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(doc))
    with pytest.raises(ConfigError, match=match) as info:
        load_config(path)
    assert str(path) in str(info.value)


def test_missing_file(tmp_path) -> None:
    with pytest.raises(ConfigError, match="configuration file not found"):
        load_config(tmp_path / "nope.json")


def test_invalid_json(tmp_path) -> None:
    path = tmp_path / "c.json"
    path.write_text("{ not json")
    with pytest.raises(ConfigError, match="not valid JSON"):
        load_config(path)


def test_shipped_config_spells_out_every_default() -> None:
    from dataclasses import asdict
    from pathlib import Path

    from device.adapt import AdaptConfig
    from device.config import Config
    from device.monitor import DEFAULT_DETECTORS

    shipped = load_config(Path(__file__).parents[2] / "device" / "configs" / "device.json")
    assert shipped.drift_detectors == DEFAULT_DETECTORS
    assert shipped.adaptation == AdaptConfig().to_dict()
    assert asdict(shipped) == {**asdict(Config()), "drift_detectors": DEFAULT_DETECTORS,
                               "adaptation": AdaptConfig().to_dict()}


def test_the_config_knows_what_the_classifier_implements() -> None:
    from device import config, knn

    assert (config.METRICS, config.POLICIES) == (knn.METRICS, knn.POLICIES)


@pytest.mark.parametrize(("overlap", "cores", "threads", "expected"), [
    (None, {0, 1, 2, 3}, 2, True),  # a Pi Zero 2W: a core is free beside the interpreter's two threads
    (None, {0, 1}, 2, False),  # every core runs the interpreter: decide inline
    (None, {0, 1}, 1, True),
    (False, {0, 1, 2, 3}, 2, False),
    (True, {0}, 1, True),
])
def test_overlap_follows_the_setting_or_the_free_cores(monkeypatch, overlap, cores, threads, expected) -> None:
    from device.config import overlap_enabled

    monkeypatch.setattr("os.sched_getaffinity", lambda _pid: cores)
    cfg = parse_config({"device": {"overlap": overlap}, "feature_extractor": {"num_threads": threads}})
    assert overlap_enabled(cfg) is expected


def test_overlap_must_be_a_boolean_or_null(tmp_path) -> None:
    path = tmp_path / "c.json"
    path.write_text(json.dumps({"device": {"overlap": "yes"}}))
    with pytest.raises(ConfigError, match=r"device.overlap"):
        load_config(path)
