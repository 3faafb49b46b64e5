"""Bundles for demonstrations and tests of rollouts: a model that is valid, signed and still bad."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path


def _reseal(bundle: Path) -> None:
    meta = json.loads((bundle / "bundle.json").read_text())
    meta["files"] = {p.name: hashlib.sha256(p.read_bytes()).hexdigest()
                     for p in sorted(bundle.iterdir()) if p.name != "bundle.json"}
    (bundle / "bundle.json").write_text(json.dumps(meta, indent=2, sort_keys=True))


def drifting_bundle(source: Path, dest: Path, version: str) -> Path:
    """`source` re-versioned, with a drift reference no real frame matches: the model loads and classifies
    as well as before, and every detector alarms on every frame. What a bad model looks like to a rollout."""
    target = dest / f"{source.name}-{version}"
    shutil.copytree(source, target)
    ref = json.loads((target / "drift_reference.json").read_text())
    ref["knn_distance"].update(mean=0.05, std=0.01)
    ref["knn_distance"]["quantiles"] = dict.fromkeys(ref["knn_distance"]["quantiles"], 0.05)
    ref["features"]["mean"] = [m + 10.0 for m in ref["features"]["mean"]]
    ref["features"]["std"] = [0.01] * len(ref["features"]["std"])
    ref["confidence"].update(mean=0.99999, std=0.00001)
    ref["confidence"]["quantiles"] = dict.fromkeys(ref["confidence"]["quantiles"], 0.99999)
    classes = len(ref["predictions"]["distribution"])
    ref["predictions"]["distribution"] = [1.0] + [0.0] * (classes - 1)
    (target / "drift_reference.json").write_text(json.dumps(ref))
    meta = json.loads((target / "bundle.json").read_text())
    meta["version"] = version
    (target / "bundle.json").write_text(json.dumps(meta))
    _reseal(target)
    return target
