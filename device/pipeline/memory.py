"""Gives the pages malloc keeps after a bundle load back to the kernel (glibc's `malloc_trim`).

Loading a pipeline frees megabytes of temporaries (the transform's float64 copy, the runtime's own buffers while
it builds the interpreter), and a bundle switch frees a whole pipeline: glibc keeps most of that memory in its
arenas, where it counts in the service's RSS until something reuses it, and a heap fragmented by the last load
holds more after each switch. `malloc_trim(0)` returns every free page of every arena (a fraction of a
millisecond); it is called after a load, never per frame. Elsewhere (musl, macOS) there is none: nothing happens.
"""

from __future__ import annotations

import ctypes
import logging
from functools import cache
from typing import Any

log = logging.getLogger(__name__)


@cache
def _malloc_trim() -> Any:
    try:
        trim = ctypes.CDLL(None).malloc_trim
    except (OSError, AttributeError):
        log.debug("no malloc_trim in this C library; freed memory stays with malloc")
        return None
    trim.argtypes, trim.restype = [ctypes.c_size_t], ctypes.c_int
    return trim


def release_free_memory() -> bool:
    """Return malloc's free pages to the kernel; False where the C library cannot."""
    trim = _malloc_trim()
    if trim is None:
        return False
    trim(0)
    return True
