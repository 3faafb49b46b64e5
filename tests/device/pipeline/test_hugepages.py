import numpy as np

from device.pipeline.hugepages import HUGE_PAGE, huge_page_copy, huge_page_empty


def test_large_array_is_copied_whole_onto_a_page_boundary() -> None:
    array = np.random.default_rng(0).normal(size=(1280, 256)).astype(np.float32)
    copy = huge_page_copy(array)
    assert np.array_equal(copy, array) and copy.dtype == array.dtype and copy.flags["C_CONTIGUOUS"]
    assert copy is array or copy.ctypes.data % HUGE_PAGE == 0


def test_small_array_is_kept() -> None:
    array = np.zeros(16, dtype=np.float32)
    assert huge_page_copy(array) is array


def test_empty_array_is_placed_on_a_page_boundary_when_large() -> None:
    out = huge_page_empty((1280, 256), np.float32)
    assert out.shape == (1280, 256) and out.dtype == np.float32 and out.flags["C_CONTIGUOUS"]
    assert out.flags["WRITEABLE"] and (out.base is None or out.ctypes.data % HUGE_PAGE == 0)
    small = huge_page_empty((4, 4), np.float64)
    assert small.shape == (4, 4) and small.base is None
