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
    assert shipped.drift_detectors is not None
    assert [d.to_dict() for d in shipped.drift_detectors] == DEFAULT_DETECTORS
    assert shipped.adaptation == AdaptConfig()
    assert asdict(shipped) == {**asdict(Config()), "drift_detectors": asdict(shipped)["drift_detectors"]}


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


def test_sections_are_typed_when_parsed() -> None:
    from device.config import AdaptConfig, DetectorConfig, UpdaterConfig

    cfg = parse_config({
        "drift_detectors": [{"type": "knn_cusum", "name": "fast", "threshold": 4, "cooldown": 5, "units": "absolute"}],
        "adaptation": {"max_age": 90, "novelty_distance": 1},
        "updater": {"poll_interval_s": 5, "service": "main"},
    })
    assert cfg.drift_detectors == [
        DetectorConfig("knn_cusum", {"threshold": 4}, name="fast", units="absolute", cooldown=5)
    ]
    assert cfg.adaptation == AdaptConfig(max_age=90, novelty_distance=1.0)
    assert cfg.updater == UpdaterConfig(poll_interval_s=5.0, service="main")
    assert parse_config({}).drift_detectors is None  # the shipped default detectors


def test_a_detector_entry_round_trips_as_written() -> None:
    from device.config import DetectorConfig

    entry = {"type": "confidence", "name": "conf", "units": "absolute", "warmup": 3, "hysteresis": 2,
             "lam": 0.1, "threshold": 2, "mode": "down"}
    assert DetectorConfig.from_dict(entry).to_dict() == entry
    assert DetectorConfig.from_dict({"type": "accuracy"}).to_dict() == {"type": "accuracy"}
    assert DetectorConfig.from_dict({"type": "accuracy", "name": "acc"}).label == "acc"


@pytest.mark.parametrize(
    ("doc", "match"),
    [
        ({"drift_detectors": {"type": "knn_cusum"}}, "drift_detectors must be a list of objects"),
        ({"drift_detectors": [{"type": "adwin"}]}, r"unknown type 'adwin', expected one of \['accuracy'"),
        ({"drift_detectors": [{"type": "knn_cusum", "treshold": 3}]}, r"unknown parameters \['treshold'\]"),
        ({"drift_detectors": [{"type": "feature_stats", "units": "absolute"}]}, r"units must be one of \('sigma',\)"),
        ({"drift_detectors": [{"type": "knn_cusum", "cooldown": -1}]}, "must be integers >= 0"),
        ({"drift_detectors": [{"type": "knn_cusum", "threshold": [1]}]}, "threshold must be a number or a string"),
        ({"drift_detectors": [{"type": "knn_cusum", "name": 3}]}, "name must be a string"),
        ({"adaptation": {"quarantine_size": 0}}, r"adaptation.quarantine_size must be an integer >= 1"),
        ({"adaptation": {"max_age": 2.5}}, r"key 'adaptation.max_age' must be int"),
        ({"adaptation": {"min_cluster": 12, "quarantine_size": 10}}, "min_cluster must be <= quarantine_size"),
        ({"adaptation": {"quarantine": 10}}, r"\[.quarantine.\]; allowed: adaptation: quarantine_size"),
        ({"updater": {"probation_s": 0}}, r"updater.probation_s must be > 0"),
        ({"updater": {"server": "http://x"}}, r"unknown key\(s\) \['server'\]; allowed: updater: server_url"),
    ],
)
def test_bad_sections_are_config_errors_when_parsed(doc, match) -> None:
    with pytest.raises(ConfigError, match=match):
        parse_config(doc)


def test_the_config_knows_each_detector_type_and_its_parameters(reference_for_kinds) -> None:
    import inspect

    from device import config
    from device.monitor import KINDS

    assert set(config.DETECTOR_PARAMETERS) == set(KINDS)
    for name, kind in KINDS.items():
        injected = set(kind.inject(reference_for_kinds))
        assert set(config.DETECTOR_PARAMETERS[name]) == set(inspect.signature(kind.detector).parameters) - injected
        assert (name in config.ABSOLUTE_UNITS) == (kind.signal is not None)


@pytest.fixture
def reference_for_kinds() -> dict:
    return {"dim": 4, "predictions": {"classes": ["a", "b"], "distribution": [0.5, 0.5]}}


def test_parsing_a_config_imports_no_numpy() -> None:
    import subprocess
    import sys

    code = "import sys\nfrom device.config import parse_config\nparse_config({})\nprint('numpy' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert done.stdout.strip() == "False"
