"""Copies of the factory bundle that tests may damage, and a helper to re-seal bundle.json."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
FACTORY = ROOT / "device" / "models" / "digits"


def copy_factory(dest: Path) -> Path:
    target = dest / "bundle"
    shutil.copytree(FACTORY, target)
    return target


def edit_meta(bundle: Path, **changes: Any) -> None:
    meta = json.loads((bundle / "bundle.json").read_text())
    meta.update(changes)
    (bundle / "bundle.json").write_text(json.dumps(meta))


def reseal(bundle: Path) -> None:
    """Recompute the per-file SHA-256 in bundle.json after a test changed a file on purpose."""
    meta = json.loads((bundle / "bundle.json").read_text())
    meta["files"] = {
        p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in bundle.iterdir() if p.name != "bundle.json"
    }
    (bundle / "bundle.json").write_text(json.dumps(meta))
