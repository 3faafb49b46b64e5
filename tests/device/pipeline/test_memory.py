import sys

import numpy as np

from device.pipeline.memory import release_free_memory


def test_freed_memory_is_handed_back_where_glibc_is() -> None:
    arrays = [np.ones(1 << 14) for _ in range(64)]  # 8 MB in malloc's own chunks, then freed
    del arrays
    released = release_free_memory()
    assert released is (sys.platform == "linux" and "glibc" in " ".join(__import__("platform").libc_ver()))
    assert release_free_memory() is released  # and again: nothing to give, no harm
