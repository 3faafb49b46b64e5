"""The adapter's state on disk, as `.npz` files (no pickle) written atomically.

The reference set, the bulk of it, goes to a file named after its content (`adapt_reference.<digest>.npz`),
written only when that content is new: the periodic save of an adapter that did not adapt rewrites a
few kilobytes, not the whole set, on the SD card. `adapt_state.npz` names the reference file it goes
with and is replaced last, and older reference files are removed after it: a power cut at any point
leaves the old state or the new one, each with its own reference set. Each reference sample's origin
(the bundle, or the frame it was learned from) and vote weight are kept beside it; state saved before
they were kept still loads, its samples matched against the bundle's to tell shipped from learned.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from device.errors import StateError
from device.pipeline.knn import BUNDLE, LEARNED, Snapshot
from device.state import save_npz_atomic

if TYPE_CHECKING:
    from device.adapt.adapter import Adapter

STATE_FILE = "adapt_state.npz"
REFERENCE_GLOB = "adapt_reference.*.npz"
VERSION = 3  # 1: the reference set inside STATE_FILE; 2: no origins (both still load)


def save_state(adapter: Adapter, directory: Path) -> None:
    """Write `adapter`'s reference set, quarantine, pending labels and probation to `directory`."""
    knn = adapter.classifier
    arrays: dict[str, np.ndarray] = {
        **adapter.quarantine.to_arrays(),
        **adapter.pending.to_arrays(knn.dim),
    }
    watch = adapter.probation.watch
    if watch is not None:
        arrays["snap_vectors"] = watch.snapshot.vectors
        arrays["snap_labels"] = watch.snapshot.labels.astype("<U64")
        if watch.snapshot.origins is not None and watch.snapshot.weights is not None:
            arrays["snap_origins"] = watch.snapshot.origins
            arrays["snap_weights"] = watch.snapshot.weights
    meta = {
        "version": VERSION,
        "dim": knn.dim,
        "scale": adapter.scale,
        "seq": adapter.seq,
        "cooldown_until": adapter.cooldown_until,
        "since_check": adapter.since_check,
        "guesses": sorted(adapter.guesses),
        "counts": dict(adapter.counts),
        "dropped": {"quarantine": adapter.quarantine.dropped, "pending": adapter.pending.dropped},
        "pseudo": adapter.pseudo.to_state(),
        "probation": adapter.probation.to_state(),
    }
    reference = _save_reference(directory, knn.vectors, knn.labels.astype("<U64"), knn.origins, knn.weights)
    meta["reference"] = reference
    arrays["meta"] = np.asarray(json.dumps(meta))
    save_npz_atomic(directory / STATE_FILE, **arrays)
    for old in directory.glob(REFERENCE_GLOB):
        if old.name != reference:
            old.unlink(missing_ok=True)


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


def load_state(adapter: Adapter, directory: Path) -> bool:
    """Restore `adapter` from `directory`; False when nothing was saved there."""
    path = directory / STATE_FILE
    if not path.exists():
        return False
    try:
        arrays = _read_npz(path)
        meta = json.loads(str(arrays["meta"]))
    except (OSError, KeyError, ValueError) as exc:
        raise StateError(f"{path}: cannot read adapter state: {exc}") from exc
    if meta.get("version") not in (1, 2, VERSION) or meta.get("dim") != adapter.classifier.dim:
        raise StateError(
            f"{path}: state version {meta.get('version')} of dimension {meta.get('dim')}, "
            f"expected version {VERSION} of dimension {adapter.classifier.dim}"
        )
    if meta["version"] >= 2:
        reference = directory / str(meta.get("reference"))
        try:
            arrays.update(_read_npz(reference))
        except (OSError, ValueError) as exc:
            raise StateError(f"{reference}: cannot read the adapter's reference set: {exc}") from exc
    try:
        _restore(adapter, arrays, meta)
    except (KeyError, ValueError, TypeError, IndexError) as exc:
        raise StateError(f"{path}: inconsistent adapter state: {exc}") from exc
    return True


def _read_npz(path: Path) -> dict[str, np.ndarray]:
    with np.load(path, allow_pickle=False) as npz:
        return {key: npz[key] for key in npz.files}


def _snapshot(arrays: dict[str, np.ndarray], prefix: str, shipped: set[bytes], weight: float) -> Snapshot:
    """A saved reference set. State saved before origins were kept: a sample is the bundle's when its vector
    is one the bundle shipped, otherwise learned (from a frame no longer known), voting with `weight`."""
    vectors, labels = arrays[f"{prefix}_vectors"], arrays[f"{prefix}_labels"]
    if f"{prefix}_origins" in arrays:
        return Snapshot(vectors, labels, arrays[f"{prefix}_origins"], arrays[f"{prefix}_weights"])
    rows = np.asarray(vectors, dtype=np.float32)
    origins = np.asarray([BUNDLE if row.tobytes() in shipped else LEARNED for row in rows], dtype=np.int64)
    return Snapshot(vectors, labels, origins, np.where(origins == BUNDLE, 1.0, weight).astype(np.float32))


def _restore(adapter: Adapter, arrays: dict[str, np.ndarray], meta: dict[str, Any]) -> None:
    knn, weight = adapter.classifier, adapter.config.label_weight
    shipped = {row.tobytes() for row in knn.vectors[knn.origins == BUNDLE]}
    knn.restore(_snapshot(arrays, "knn", shipped, weight))
    adapter.quarantine.load_arrays(arrays)
    adapter.pending.load_arrays(arrays)
    adapter.quarantine.dropped = int(meta["dropped"]["quarantine"])
    adapter.pending.dropped = int(meta["dropped"]["pending"])
    adapter.pseudo.load_state(meta["pseudo"])
    snapshot = None
    if "snap_vectors" in arrays:
        snapshot = _snapshot(arrays, "snap", shipped, weight)
    adapter.probation.load_state(meta["probation"], snapshot)
    adapter.scale = float(meta["scale"])
    adapter.seq = int(meta["seq"])
    adapter.cooldown_until = int(meta["cooldown_until"])
    adapter.since_check = int(meta["since_check"])
    adapter.guesses = {int(s) for s in meta.get("guesses", [])}  # version 1 and 2: none known
    adapter.counts.clear()
    adapter.counts.update({str(k): int(v) for k, v in meta["counts"].items()})
