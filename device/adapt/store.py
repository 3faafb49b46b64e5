"""The adapter's state on disk, as `.npz` files (no pickle) written atomically.

The reference set, the bulk of it, goes to a file named after its content (`adapt_reference.<digest>.npz`),
written only when that content is new: the periodic save of an adapter that did not adapt rewrites a
few kilobytes, not the whole set, on the SD card. `adapt_state.npz` names the reference file it goes
with and is replaced last, and older reference files are removed after it: a power cut at any point
leaves the old state or the new one, each with its own reference set. Each reference sample's origin
(the bundle, or the frame it was learned from) and vote weight are kept beside it; state saved before
they were kept still loads, its samples matched against the bundle's to tell shipped from learned.

Text arrays (labels) go to disk as wide as their longest string, not the 64 characters (256 bytes) they are
held in: the widths they had are kept in the state's meta (`text_dtypes`), and loading gives them back, so
what is loaded is what was saved, dtype and all (code that predates this reads labels as `str`, at any width).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from device.errors import StateError
from device.knn import BUNDLE, LEARNED, Snapshot
from device.state import save_npz_atomic

STATE_FILE = "adapt_state.npz"
REFERENCE_GLOB = "adapt_reference.*.npz"
VERSION = 3  # 1: the reference set inside STATE_FILE; 2: no origins (both still load)
REFERENCE_KEYS = ("knn_vectors", "knn_labels", "knn_origins", "knn_weights")


@dataclass
class AdapterState:
    """An adapter's state as plain data (see `Adapter.to_state`): arrays, the reference set among them as
    `knn_*`, and JSON-friendly `meta` that starts with the vectors' dimension (`dim`)."""

    arrays: dict[str, np.ndarray]
    meta: dict[str, Any]


def save_state(state: AdapterState, directory: Path) -> None:
    """Write `state` to `directory`: the reference set to its own file, then the rest to `STATE_FILE`."""
    narrow = {key: _narrowed(value) for key, value in state.arrays.items()}
    text_dtypes = {key: value.dtype.str for key, value in state.arrays.items() if narrow[key] is not value}
    arrays = {key: value for key, value in narrow.items() if key not in REFERENCE_KEYS}
    reference = _save_reference(directory, *(narrow[key] for key in REFERENCE_KEYS))
    meta = {"version": VERSION, **state.meta, "reference": reference, "text_dtypes": text_dtypes}
    arrays["meta"] = np.asarray(json.dumps(meta))
    save_npz_atomic(directory / STATE_FILE, **arrays)
    for old in directory.glob(REFERENCE_GLOB):
        if old.name != reference:
            old.unlink(missing_ok=True)


def _narrowed(array: np.ndarray) -> np.ndarray:
    """A text array as wide as its longest string (`array` itself when it is no wider, or not text)."""
    if array.dtype.kind != "U" or not array.size:
        return array
    width = max(1, int(np.char.str_len(array).max()))
    return array.astype(f"<U{width}") if width < array.dtype.itemsize // 4 else array


def _save_reference(
    directory: Path, vectors: np.ndarray, labels: np.ndarray, origins: np.ndarray, weights: np.ndarray
) -> str:
    """The reference set's file name, written if no file holds this content yet."""
    digest = hashlib.sha256()
    for array in (vectors, labels, origins, weights):
        digest.update(f"{array.dtype.str}{array.shape}".encode())
        digest.update(np.ascontiguousarray(array).tobytes())
    name = f"adapt_reference.{digest.hexdigest()[:16]}.npz"
    if not (directory / name).exists():
        save_npz_atomic(
            directory / name, knn_vectors=vectors, knn_labels=labels, knn_origins=origins, knn_weights=weights
        )
    return name


def load_state(directory: Path, dim: int) -> AdapterState | None:
    """The state saved in `directory` for vectors of dimension `dim`; None when nothing was saved there."""
    path = directory / STATE_FILE
    if not path.exists():
        return None
    try:
        arrays = _read_npz(path)
        meta = json.loads(str(arrays.pop("meta")))
    except (OSError, KeyError, ValueError) as exc:
        raise StateError(f"{path}: cannot read adapter state: {exc}") from exc
    if meta.get("version") not in (1, 2, VERSION) or meta.get("dim") != dim:
        raise StateError(
            f"{path}: state version {meta.get('version')} of dimension {meta.get('dim')}, "
            f"expected version {VERSION} of dimension {dim}"
        )
    if meta["version"] >= 2:
        reference = directory / str(meta.get("reference"))
        try:
            arrays.update(_read_npz(reference))
        except (OSError, ValueError) as exc:
            raise StateError(f"{reference}: cannot read the adapter's reference set: {exc}") from exc
    try:
        for key, dtype in meta.pop("text_dtypes", {}).items():
            wide = np.dtype(dtype)
            if wide.kind != "U" or arrays[key].dtype.kind != "U":
                raise ValueError(f"{key} is {arrays[key].dtype}, to be {wide}: not text")
            arrays[key] = arrays[key].astype(wide)
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise StateError(f"{path}: cannot give the adapter's text arrays back their width: {exc!r}") from exc
    return AdapterState(arrays, meta)


def _read_npz(path: Path) -> dict[str, np.ndarray]:
    with np.load(path, allow_pickle=False) as npz:
        return {key: npz[key] for key in npz.files}


def saved_snapshot(arrays: dict[str, np.ndarray], prefix: str, shipped: set[bytes], weight: float) -> Snapshot:
    """A saved reference set. State saved before origins were kept: a sample is the bundle's when its vector
    is one the bundle shipped, otherwise learned (from a frame no longer known), voting with `weight`."""
    vectors, labels = arrays[f"{prefix}_vectors"], arrays[f"{prefix}_labels"]
    if f"{prefix}_origins" in arrays:
        return Snapshot(vectors, labels, arrays[f"{prefix}_origins"], arrays[f"{prefix}_weights"])
    rows = np.asarray(vectors, dtype=np.float32)
    origins = np.asarray([BUNDLE if row.tobytes() in shipped else LEARNED for row in rows], dtype=np.int64)
    return Snapshot(vectors, labels, origins, np.where(origins == BUNDLE, 1.0, weight).astype(np.float32))
