"""Places a large, read-only per-frame array on 2 MiB pages where the kernel offers them (Linux THP).

The transform's weight matrix (1.3 MB for 1280 -> 256) is streamed once per frame right after `invoke`
has filled the TLB with the model's own pages; one huge page instead of hundreds of small ones saves
most of the page walks. Where madvise or THP is missing (e.g. a 32-bit Pi kernel) the array is kept as is.
"""

from __future__ import annotations

import mmap
from typing import Any

import numpy as np

HUGE_PAGE = 2 << 20  # bytes


def huge_page_empty(shape: tuple[int, ...], dtype: Any) -> np.ndarray:
    """An uninitialised C-contiguous array starting on a huge-page boundary, or a plain one when not possible.

    Filling it in place (e.g. a ufunc's `out=`) spares the copy `huge_page_copy` makes: one array alive, not two."""
    dtype = np.dtype(dtype)
    nbytes = int(np.prod(shape)) * dtype.itemsize
    advice, private = getattr(mmap, "MADV_HUGEPAGE", None), getattr(mmap, "MAP_PRIVATE", None)
    if advice is None or private is None or nbytes < HUGE_PAGE // 2:
        return np.empty(shape, dtype)
    try:  # private anonymous memory (shared would be shmem, which THP leaves alone); lives as long as the view
        region = mmap.mmap(-1, nbytes + HUGE_PAGE, flags=private | mmap.MAP_ANONYMOUS)
        region.madvise(advice)
    except (OSError, ValueError):
        return np.empty(shape, dtype)
    raw = np.frombuffer(region, dtype=np.uint8)
    start = -raw.ctypes.data % HUGE_PAGE
    return raw[start : start + nbytes].view(dtype).reshape(shape)


def huge_page_copy(array: np.ndarray) -> np.ndarray:
    """A C-contiguous copy of `array` starting on a huge-page boundary, or `array` itself when not possible."""
    out = huge_page_empty(array.shape, array.dtype)
    if out.base is None:  # a plain array: no huge page to be had
        return array
    out[...] = array
    return out
