"""The smoke test: a staged bundle must load and classify sample frames in a separate process
before it may go live; a crash, hang or non-finite output there never reaches the inference service.

Run as `python -m device.updater.smoke BUNDLE_DIR --frames N`; prints one JSON line on success.
"""

from __future__ import annotations

import argparse
import json
import logging
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # the child process imports numpy; the updater, which only starts it, does not
    import numpy as np

from device.errors import SmokeTestError, TinyLCMError

log = logging.getLogger(__name__)


def sample_frames(shape: tuple[int, ...], count: int) -> list[np.ndarray]:
    """Held-out digits of all ten classes, scaled to the model's input."""
    from device.capture.digits import DigitsSource

    source = DigitsSource(classes=tuple(range(10)), seed=0, limit=count, size=(shape[2], shape[1]))
    return [frame.image for frame in source]


def check_bundle(path: Path, count: int) -> dict[str, Any]:
    """Load the bundle's whole pipeline and run `count` frames; raises on anything off."""
    import numpy as np

    from device.capture.base import Frame
    from device.pipeline.pipeline import Pipeline

    pipeline = Pipeline.from_bundle(path, detect=False)
    bundle = pipeline.bundle
    n_classes = bundle.outputs["probabilities"].shape[-1]
    labels = []
    for seq, image in enumerate(sample_frames(bundle.input.shape, count)):
        result = pipeline.process(Frame(image), seq)
        probs, feats = np.asarray(result.probabilities), np.asarray(result.features)
        if probs.shape != (n_classes,) or feats.shape != (pipeline.extractor.feature_dim,):
            raise SmokeTestError(f"outputs {probs.shape}, {feats.shape} differ from bundle.json", path)
        if not (np.all(np.isfinite(probs)) and np.all(np.isfinite(feats)) and np.all(np.isfinite(result.vector))):
            raise SmokeTestError("the model gave non-finite outputs", path)
        labels.append(result.label)
    return {"ok": True, "model": bundle.name, "version": bundle.version, "frames": count, "labels": labels}


def run_smoke_test(path: Path, frames: int = 8, timeout_s: float = 120.0) -> dict[str, Any]:
    """Run `check_bundle` in a child process; `SmokeTestError` when it fails, crashes or hangs."""
    argv = [sys.executable, "-m", "device.updater.smoke", str(path), "--frames", str(frames)]
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout_s, check=False)
    except subprocess.TimeoutExpired as exc:
        raise SmokeTestError(f"the model did not finish {frames} frames within {timeout_s:.0f} s", path) from exc
    lines = done.stdout.strip().splitlines()
    if done.returncode != 0 or not lines:
        tail = (done.stderr.strip().splitlines() or ["no output"])[-1]
        raise SmokeTestError(f"smoke test exited with {done.returncode}: {tail}", path)
    try:
        report: dict[str, Any] = json.loads(lines[-1])
    except ValueError as exc:
        raise SmokeTestError(f"smoke test printed no report: {lines[-1]!r}", path) from exc
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m device.updater.smoke", description=__doc__)
    parser.add_argument("bundle", type=Path)
    parser.add_argument("--frames", type=int, default=8)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    try:
        report = check_bundle(args.bundle, args.frames)
    except TinyLCMError as exc:
        sys.stderr.write(f"{exc}\n")
        return 3
    sys.stdout.write(json.dumps(report) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
