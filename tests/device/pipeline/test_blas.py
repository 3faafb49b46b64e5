import pytest

from device.pipeline.blas import limit_blas_threads


def test_numpy_openblas_is_limited_to_one_thread() -> None:
    threadpoolctl = pytest.importorskip("threadpoolctl")
    pools = [p for p in threadpoolctl.threadpool_info() if p["internal_api"] == "openblas"]
    if not pools:
        pytest.skip("numpy does not use OpenBLAS here")
    try:
        assert limit_blas_threads(1)
        assert all(p["num_threads"] == 1 for p in threadpoolctl.threadpool_info() if p["internal_api"] == "openblas")
    finally:
        limit_blas_threads(pools[0]["num_threads"])
