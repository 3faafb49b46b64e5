"""The adapter's state on disk: one `.npz` (no pickle) written atomically, so a power cut mid-write
leaves either the old state or the new one, and the reference set always matches its quarantine.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from device.errors import StateError
from device.pipeline.knn import Snapshot
from device.state import save_npz_atomic

if TYPE_CHECKING:
    from device.adapt.adapter import Adapter

STATE_FILE = "adapt_state.npz"
VERSION = 1


def save_state(adapter: Adapter, directory: Path) -> None:
    """Write `adapter`'s reference set, quarantine, pending labels and probation to `directory`."""
    knn = adapter.classifier
    arrays: dict[str, np.ndarray] = {
        **adapter.quarantine.to_arrays(),
        **adapter.pending.to_arrays(knn.dim),
        "knn_vectors": knn.vectors,
        "knn_labels": knn.labels.astype("<U64"),
    }
    watch = adapter.probation.watch
    if watch is not None:
        arrays["snap_vectors"] = watch.snapshot.vectors
        arrays["snap_labels"] = watch.snapshot.labels.astype("<U64")
    meta = {
        "version": VERSION,
        "dim": knn.dim,
        "scale": adapter.scale,
        "seq": adapter.seq,
        "cooldown_until": adapter.cooldown_until,
        "since_check": adapter.since_check,
        "counts": dict(adapter.counts),
        "dropped": {"quarantine": adapter.quarantine.dropped, "pending": adapter.pending.dropped},
        "pseudo": adapter.pseudo.to_state(),
        "probation": adapter.probation.to_state(),
    }
    arrays["meta"] = np.asarray(json.dumps(meta))
    save_npz_atomic(directory / STATE_FILE, **arrays)


def load_state(adapter: Adapter, directory: Path) -> bool:
    """Restore `adapter` from `directory`; False when nothing was saved there."""
    path = directory / STATE_FILE
    if not path.exists():
        return False
    try:
        with np.load(path, allow_pickle=False) as npz:
            arrays = {key: npz[key] for key in npz.files}
        meta = json.loads(str(arrays["meta"]))
    except (OSError, KeyError, ValueError) as exc:
        raise StateError(f"{path}: cannot read adapter state: {exc}") from exc
    if meta.get("version") != VERSION or meta.get("dim") != adapter.classifier.dim:
        raise StateError(
            f"{path}: state version {meta.get('version')} of dimension {meta.get('dim')}, "
            f"expected version {VERSION} of dimension {adapter.classifier.dim}"
        )
    try:
        _restore(adapter, arrays, meta)
    except (KeyError, ValueError, TypeError, IndexError) as exc:
        raise StateError(f"{path}: inconsistent adapter state: {exc}") from exc
    return True


def _restore(adapter: Adapter, arrays: dict[str, np.ndarray], meta: dict[str, Any]) -> None:
    adapter.classifier.restore(Snapshot(vectors=arrays["knn_vectors"], labels=arrays["knn_labels"]))
    adapter.quarantine.load_arrays(arrays)
    adapter.pending.load_arrays(arrays)
    adapter.quarantine.dropped = int(meta["dropped"]["quarantine"])
    adapter.pending.dropped = int(meta["dropped"]["pending"])
    adapter.pseudo.load_state(meta["pseudo"])
    snapshot = None
    if "snap_vectors" in arrays:
        snapshot = Snapshot(vectors=arrays["snap_vectors"], labels=arrays["snap_labels"])
    adapter.probation.load_state(meta["probation"], snapshot)
    adapter.scale = float(meta["scale"])
    adapter.seq = int(meta["seq"])
    adapter.cooldown_until = int(meta["cooldown_until"])
    adapter.since_check = int(meta["since_check"])
    adapter.counts.clear()
    adapter.counts.update({str(k): int(v) for k, v in meta["counts"].items()})
