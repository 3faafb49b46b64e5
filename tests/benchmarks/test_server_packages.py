"""The server benchmark's packages are what a device sends, and the server's unpacker takes them."""

from pathlib import Path

from benchmarks.server import DRIFT_EVENTS, METRICS, PREDICTIONS, _device_package
from server.worker.unpack import Limits, unpack


def test_a_benchmark_package_is_30_s_of_a_device_and_unpacks(tmp_path: Path) -> None:
    package_id, body, _ = _device_package("dev-bench", 101)
    archive = tmp_path / "package.tar.gz"
    archive.write_bytes(body)
    unpacked = unpack(archive, tmp_path / "files", Limits(64 * 1024 * 1024, 1000), "dev-bench", package_id)
    kinds = [r.kind for r in unpacked.records]
    assert (kinds.count("prediction"), kinds.count("metric"), kinds.count("drift_event")) == (
        PREDICTIONS, METRICS, DRIFT_EVENTS)
    assert [r.seq for r in unpacked.records] == list(range(101, 101 + PREDICTIONS + METRICS + DRIFT_EVENTS))
    samples = [r.blob for r in unpacked.records if r.kind == "drift_event"]
    assert all(s is not None and unpacked.blob_path(s).read_bytes()[:2] == b"\xff\xd8" for s in samples)
