"""Hot bundle reload: the frame loop switches to the bundle `models/current` points to once the updater flipped it."""

from __future__ import annotations

import logging
from pathlib import Path

from device.bundle import factory_bundle
from device.config import Config
from device.errors import TinyLCMError
from device.pipeline.memory import release_free_memory
from device.pipeline.persist import load_state, save_state
from device.pipeline.pipeline import Pipeline
from device.runner import Runner

log = logging.getLogger(__name__)


def bundle_path(config: Config, announce: bool = True) -> Path:
    """The configured bundle, else the factory one; `announce` says so (once, at start: the frame loop asks often)."""
    configured = config.under_data_dir(config.feature_extractor.bundle)
    if configured.exists():
        return configured
    if announce:
        log.warning("bundle %s does not exist; starting on the factory bundle", configured)
    return factory_bundle()


def _identity(bundle: Path) -> tuple[Path, int, int]:
    """A bundle directory and its bundle.json's inode and mtime: a bundle installed again at the same path differs."""
    try:
        st = (bundle / "bundle.json").stat()
    except OSError:
        return bundle, -1, -1
    return bundle, st.st_ino, st.st_mtime_ns


class BundleWatch:
    """Swaps the runner's pipeline when the configured bundle resolves elsewhere; keeps the old one if it fails.

    The detectors' and adapter's state of each model is saved under `state_root` and loaded on the switch.
    """

    def __init__(self, config: Config, runner: Runner, bundle_dir: Path, state_root: Path) -> None:
        self.config = config
        self.runner = runner
        self.bundle_dir = bundle_dir  # the resolved bundle the runner's pipeline was loaded from
        self.state_root = state_root
        self.error = ""  # why the bundle models/current points to could not be loaded
        self._release = False  # the pipeline switched from at the last check is gone: give its pages back
        self._failed: tuple[Path, int, int] | None = None  # the bundle the last switch failed to load

    def check(self, seq: int) -> None:
        """Load the bundle `models/current` points to if it changed; `seq` is the next frame's."""
        if self._release:  # by now the frame loop holds no frame of the old pipeline (an overlapped one did)
            self._release = False
            release_free_memory()  # so a switch does not leave the service larger by what malloc kept of it
        target = bundle_path(self.config, announce=False).resolve()
        if target == self.bundle_dir:
            return
        old = self.runner.pipeline
        # the old interpreter is freed while the new one is built (rebuilt if that fails), except when trying
        # again a bundle that failed: then both are loaded at once, as the old is not rebuilt at every look.
        # The price: a bundle that failed only for want of memory beside the old one keeps failing until the
        # service restarts (with the new bundle current, it then loads alone) or the updater rolls it back.
        attempt = _identity(target)
        replacing = old if attempt != self._failed else None
        try:
            pipeline = Pipeline.from_bundle(target, self.config, replacing=replacing)
        except TinyLCMError as exc:
            if self.error != str(exc):
                log.error("cannot switch to %s, staying on %s: %s", target, old.bundle.version, exc)
            self.error, self._failed = str(exc), attempt
            self._release = True  # what the failed load had built
            return
        save_state(self.state_root, old, seq)
        load_state(self.state_root, pipeline)
        log.info("switched from %s %s to %s %s", old.bundle.name, old.bundle.version,
                 pipeline.bundle.name, pipeline.bundle.version)
        self.runner.pipeline = pipeline
        self.runner.stats.new_window()  # the gate figures in /healthz must be the new model's own
        self.bundle_dir, self.error, self._failed = target, "", None
        self._release = True
