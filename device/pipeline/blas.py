"""Keeps numpy's BLAS on the calling thread: the interpreter owns the cores, the per-frame products are tiny.

OpenBLAS splits even a (1280,) @ (1280, 256) product across its thread pool, whose workers then spin
on the cores the interpreter needs; one thread is faster for these sizes and leaves the cores alone.
"""

from __future__ import annotations

import ctypes
import logging
from pathlib import Path

log = logging.getLogger(__name__)

# Entry points of the OpenBLAS builds numpy ships (scipy-openblas, 64- and 32-bit ints) and of a system one.
_SETTERS = ("scipy_openblas_set_num_threads64_", "scipy_openblas_set_num_threads", "openblas_set_num_threads64_",
            "openblas_set_num_threads")


def _loaded_openblas() -> list[str]:
    """Paths of the OpenBLAS libraries mapped into this process (numpy must be imported first)."""
    try:
        maps = Path("/proc/self/maps").read_text()
    except OSError:
        return []
    paths = {line.split()[-1] for line in maps.splitlines() if "openblas" in line.lower() and "/" in line}
    return sorted(paths)


def limit_blas_threads(threads: int = 1) -> bool:
    """Set the thread count of every loaded OpenBLAS; False when there is none (another BLAS, or not Linux)."""
    import numpy  # noqa: F401  (maps numpy's BLAS into the process)

    done = False
    for path in _loaded_openblas():
        try:
            lib = ctypes.CDLL(path)
        except OSError:
            continue
        for name in _SETTERS:
            setter = getattr(lib, name, None)
            if setter is not None:
                setter.argtypes = [ctypes.c_int]
                setter(threads)
                done = True
                break
    if not done:
        log.debug("no OpenBLAS found to limit to %d thread(s)", threads)
    return done
