"""The device benchmark's accounting: the image's environment, writes by file from an strace log, mappings."""

from pathlib import Path

from benchmarks.device import (
    ROOT,
    _group,
    _written_once,
    compose_flags,
    device_config,
    image_env,
    traced_writes,
    update_timeline,
)

DATA = "/tmp/bench/0"
TRACE = f"""\
101 100.000001 pwrite64(4<{DATA}/outbox.db-wal>, ""..., 1048, 0) = 1048
102 100.000002 write(7<{DATA}/state/digits-1.0.0/.monitor.json.abc123.tmp>, ""..., 2000 <unfinished ...>
101 100.000003 pwrite64(4<{DATA}/outbox.db-wal>, ""..., 1048, 1048) = 1048
102 100.000004 <... write resumed>) = 2000
102 100.000005 write(8<{DATA}/state/digits-1.0.0/.monitor.0123456789abcdef.npy.x1.tmp>, ""..., 4096) = 4096
102 100.000006 write(2</dev/shm/bench/run.importtime>, ""..., 50) = 50
103 100.000007 sendfile(9<{DATA}/models/.staging/model.tflite>, 10</src/model.tflite>, NULL, 5000) = 5000
101 200.000000 pwrite64(4<{DATA}/outbox.db-wal>, ""..., 1048, 2096) = 1048
"""


def test_writes_are_summed_by_file_until_the_sample(tmp_path: Path) -> None:
    trace = tmp_path / "run.strace"
    trace.write_text(TRACE)
    files = traced_writes(trace, DATA, until=150.0)
    assert files == {  # the last WAL write came after the sample; the log on tmpfs is not the data directory's
        "outbox.db-wal": 2096,
        "state/*/monitor.json": 2000,
        "state/*/monitor.<digest>.npy": 4096,
        "models/.staging/model.tflite": 5000,
    }
    once = [key for key in files if _written_once(key)]
    assert once == ["state/*/monitor.<digest>.npy", "models/.staging/model.tflite"]


def test_mappings_are_grouped_by_object() -> None:
    assert _group("/usr/lib/x86_64-linux-gnu/libcrypto.so.3") == "libcrypto.so"
    assert _group("/venv/numpy/_core/_multiarray_umath.cpython-311-x86_64-linux-gnu.so") == "_multiarray_umath.so"
    assert _group("/venv/scipy_openblas64/lib/libscipy_openblas64_-ff651d7f.so") == "libscipy_openblas64_.so"
    assert _group("[heap]") == "[heap]"
    assert _group("").startswith("anonymous")


def test_the_services_run_with_the_runtime_environment_of_the_image() -> None:
    env = image_env(ROOT)
    assert env["OPENBLAS_NUM_THREADS"] == "1" and env["MALLOC_ARENA_MAX"] == "2"
    assert "PATH" not in env and not any(key.startswith("PIP_") for key in env)  # the build stage's are not the image's


def test_the_devices_sync_only_with_a_server_url(tmp_path: Path) -> None:
    config = device_config(tmp_path, 5.0, tmp_path / "bundle")
    assert "sync" not in config and config["camera"] == {"source": "digits", "fps": 5.0, "realtime": True}
    synced = device_config(tmp_path, 5.0, tmp_path / "bundle", commit_s=2.0, server_url="http://127.0.0.1:9")
    assert synced["sync"] == {"server_url": "http://127.0.0.1:9"} and synced["outbox"] == {"commit_interval_s": 2.0}
    from device.config import parse_config  # both are configurations the device accepts

    assert parse_config(synced).sync.server_url == "http://127.0.0.1:9" and parse_config(config).sync.server_url == ""


def test_the_services_run_with_the_flags_of_the_compose_file() -> None:
    assert compose_flags(ROOT, "inference") == []
    assert compose_flags(ROOT, "updater") == ["--reexec-after-download"]


def test_the_update_scenario_runs_the_slot_and_the_updater_section(tmp_path: Path) -> None:
    from device.config import parse_config

    doc = device_config(tmp_path, 5.0, None, health_port=8400,
                        updater={"server_url": "http://127.0.0.1:8", "probation_s": 20.0})
    config = parse_config(doc)
    assert config.feature_extractor.bundle == "models/current" and config.device.health_port == 8400
    assert config.updater.server_url == "http://127.0.0.1:8" and config.updater.probation_s == 20.0


def test_the_update_timeline_splits_at_the_desire_the_switch_and_the_commit() -> None:
    mb = 1024
    rows = [(0.0, 80 * mb, 25 * mb, 0, "IDLE"), (1.0, 80 * mb, 25 * mb, 0, "IDLE"),
            (2.0, 80 * mb, 39 * mb, 0, "DOWNLOADING"), (3.0, 81 * mb, 39 * mb, 64 * mb, "STAGED"),
            (4.0, 90 * mb, 25 * mb, 0, "SWITCHED"), (5.0, 85 * mb, 25 * mb, 0, "PROBATION"),
            (6.0, 82 * mb, 25 * mb, 0, "COMMITTED"), (7.0, 82 * mb, 25 * mb, 0, "COMMITTED")]
    out = update_timeline(rows, desired_at=1.5, interval_s=1.0)
    assert out["before"]["max_sum_mb"] == 105.0 and out["before"]["seconds"] == 2.0
    assert out["round"]["updater_peak_mb"] == 39.0 and out["round"]["max_sum_mb"] == 120.0
    assert out["round"]["max_sum_with_children_mb"] == 184.0
    assert out["round"]["seconds_sum_over_limit"] == 0.0 and out["round"]["seconds_with_children_over_limit"] == 1.0
    assert out["probation"]["run_peak_mb"] == 90.0 and out["probation"]["seconds"] == 2.0
    assert out["after"]["sum_at_end_mb"] == 107.0 and out["whole"]["max_sum_with_children_mb"] == 184.0
