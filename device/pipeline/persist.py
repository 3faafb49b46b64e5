"""The pipeline's learned state across restarts: detectors, adapter (with its kNN) and the frame counter.

State lives under `state/<bundle name>-<version>/`, so a new model starts from its own baseline
and a rollback finds the old model's state where it left it.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from contract.atomic import write_json_atomic
from device.errors import StateError

if TYPE_CHECKING:
    from device.pipeline.pipeline import Pipeline

log = logging.getLogger(__name__)
MONITOR_FILE = "monitor.json"
FRAMES_FILE = "frames.json"


def _resume(stage: str, load: Callable[[], object]) -> None:
    try:
        load()
    except StateError as exc:
        log.warning("starting the %s afresh: %s", stage, exc)


def state_dir(root: Path, pipeline: Pipeline) -> Path:
    return root / f"{pipeline.bundle.name}-{pipeline.bundle.version}"


def save_state(root: Path, pipeline: Pipeline, next_seq: int) -> None:
    """Write every stage's state atomically (each file on its own)."""
    directory = state_dir(root, pipeline)
    directory.mkdir(parents=True, exist_ok=True)
    if pipeline.monitor is not None:
        pipeline.monitor.save(directory / MONITOR_FILE)
    if pipeline.adapter is not None:
        pipeline.adapter.save(directory)
    write_json_atomic(directory / FRAMES_FILE, {"next_seq": next_seq})


def load_state(root: Path, pipeline: Pipeline) -> int:
    """Resume the stages from `root`; returns the next frame seq. Unusable state is logged and ignored."""
    directory = state_dir(root, pipeline)
    if not directory.is_dir():
        return 0
    try:
        next_seq = int(json.loads((directory / FRAMES_FILE).read_text())["next_seq"])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        log.warning("no usable frame counter in %s (%s); starting at 0", directory, exc)
        next_seq = 0
    monitor, adapter = pipeline.monitor, pipeline.adapter
    if monitor is not None and (directory / MONITOR_FILE).exists():
        _resume("detectors", lambda: monitor.load(directory / MONITOR_FILE))
    if adapter is not None:
        _resume("adapter", lambda: adapter.load(directory))
    pipeline.notice_classes()
    log.info("resumed pipeline state from %s at frame %d", directory, next_seq)
    return next_seq
