"""numpy arrays saved atomically (on `contract.atomic`); numpy is imported only here, where arrays are saved."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from contract.atomic import write_atomic

if TYPE_CHECKING:  # the updater never needs numpy
    import numpy as np


def save_npz_atomic(path: str | Path, **arrays: np.ndarray) -> None:
    """Write arrays as an uncompressed .npz atomically (loadable with allow_pickle=False)."""
    import numpy as np
    write_atomic(path, lambda f: np.savez(f, **arrays))  # type: ignore[arg-type]
