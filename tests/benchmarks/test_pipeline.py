"""`python -m benchmarks.pipeline` runs end to end on the MobileNetV2 fixture (figures are not judged here)."""

from benchmarks.pipeline import FIXTURE, run


def test_the_pipeline_benchmark_reports_every_figure() -> None:
    report = run(FIXTURE, blocks=3, block_size=4, threads=1)
    ratios = ("overhead_ratio", "overhead_ratio_sequential", "overhead_ratio_overlapped",
              "cpu_ratio_sequential", "cpu_ratio_overlapped")
    assert all(report[k] > 0 for k in ratios)
    assert report["overhead_ratio"] == report[f"overhead_ratio_{report['loop']}"]
    assert report["frames"] == 12 and report["reference_set"] == [200, 256] and report["input"] == [1, 224, 224, 3]
    assert report["outbox_dropped"] == 0
