"""The monitor: feeds every configured detector its input from one `Result` and collects alarms.

Each detector is wrapped in a `Watch` that adds warm-up, cooldown and hysteresis on exit;
the monitor's whole state is saved atomically so alarms and baselines survive a restart.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from contract.atomic import write_atomic, write_bytes_atomic
from device.errors import StateError
from device.monitor.base import DriftDetector

if TYPE_CHECKING:
    from device.result import Result

log = logging.getLogger(__name__)

STATE_VERSION = 1
PART_BYTES = 4096  # a detector's state value this large (an array's bytes, else its JSON) gets a file of its own
PART_KEY = "$part"  # what stands in `monitor.json` for such a value: {PART_KEY: file name}
EXIT_RATIO = 0.5  # a drifting detector calms down while its statistic stays below this share of threshold
KNN_Z_CLIP = 5.0  # z of the kNN distance is capped here: one far-out frame must not trip a cumulative chart
INPUTS = ("knn", "features", "labelled_features", "confidence", "label", "correct")


@dataclass(frozen=True, slots=True)
class DriftSignal:
    """One alarm: which detector, its statistic and threshold (in the configured units), on which frame."""

    detector: str
    statistic: float
    threshold: float
    seq: int


@dataclass(slots=True)
class Watch:
    """One detector, the `Result` input it reads, and its alarm discipline."""

    name: str
    detector: DriftDetector
    input: str  # one of INPUTS
    scale: float = 1.0  # reference σ when configured in absolute units, to report in those units
    warmup: int = 0  # updates before the first alarm may be raised
    cooldown: int = 0  # updates after an alarm during which repeated alarms are swallowed
    hysteresis: int = 50  # calm updates (statistic < EXIT_RATIO * threshold) that end `drifting`
    seen: int = 0
    last_alarm: int = -1  # `seen` at the last emitted alarm
    calm: int = 0
    drifting: bool = False

    def observe(self, value: Any, seq: int) -> DriftSignal | None:
        """Update the detector; a `DriftSignal` when it fires outside warm-up and cooldown."""
        detector = self.detector
        detector.update(value)
        self.seen += 1
        if self.drifting:
            self.calm = self.calm + 1 if detector.statistic < EXIT_RATIO * detector.threshold else 0
            self.drifting = self.calm < self.hysteresis
        if not detector.drift_detected or self.seen <= self.warmup:
            return None  # the usual case: no statistic needed
        statistic = detector.statistic
        self.drifting, self.calm = True, 0
        if self.last_alarm >= 0 and self.seen - self.last_alarm <= self.cooldown:
            return None
        self.last_alarm = self.seen
        return DriftSignal(self.name, statistic * self.scale, detector.threshold * self.scale, seq)

    def state(self, saved: bool = False) -> dict[str, Any]:
        """Counters and the detector's state (`saved`: as the periodic save writes it, `saved_state()`)."""
        counters = {"seen": self.seen, "last_alarm": self.last_alarm, "calm": self.calm}
        detector = self.detector.saved_state() if saved else self.detector.state()
        return {**counters, "drifting": self.drifting, "detector": detector}

    def restore(self, state: dict[str, Any]) -> None:
        self.detector.restore(state["detector"])
        self.seen, self.last_alarm, self.calm = int(state["seen"]), int(state["last_alarm"]), int(state["calm"])
        self.drifting = bool(state["drifting"])


class Monitor:
    """Label-free drift detection over the classifier's `Result`s; build it with `build_monitor`."""

    def __init__(
        self,
        watches: list[Watch],
        reference: dict[str, Any],
        fingerprint: str = "",
        configs: list[dict[str, Any]] | None = None,
    ) -> None:
        self.watches = watches
        self.fingerprint = fingerprint  # identifies config + reference, so stale state is refused
        self._configs = configs or []  # the watches' configs: state saved before some were added still loads
        self._reference = reference
        self.skipped = 0  # updates skipped for a non-finite input
        self._knn_mean = float(reference["knn_distance"]["mean"])
        self._knn_scale = 1.0 / float(reference["knn_distance"]["std"])
        self._conf_mean = float(reference["confidence"]["mean"])
        self._conf_scale = 1.0 / float(reference["confidence"]["std"])
        self._feat_mean = np.asarray(reference["features"]["mean"], dtype=np.float64)
        self._feat_scale = 1.0 / np.asarray(reference["features"]["std"], dtype=np.float64)
        self._feat_z = np.empty_like(self._feat_mean)  # the z-scored vector of the current frame
        self._frame_watches = [w for w in watches if w.input != "correct"]
        self._label_watches = [w for w in watches if w.input == "correct"]
        self._uses = {w.input for w in self._frame_watches}

    @property
    def drifting(self) -> bool:
        """True from an alarm until every detector has been calm for its hysteresis."""
        return any(w.drifting for w in self.watches)

    def _inputs(self, result: Result) -> dict[str, Any] | None:
        """Each detector input of one frame (z-scored by the reference), or None if one is not finite."""
        values: dict[str, Any] = {"label": result.label}
        if "knn" in self._uses:
            distances = result.neighbours.distances
            z = (float(distances.sum()) / distances.shape[0] - self._knn_mean) * self._knn_scale
            values["knn"] = min(z, KNN_Z_CLIP) if math.isfinite(z) else z  # non-finite: caught below
        if "confidence" in self._uses:
            values["confidence"] = (float(result.model_confidence) - self._conf_mean) * self._conf_scale
        if "features" in self._uses or "labelled_features" in self._uses:
            vector = result.vector
            if vector.shape != self._feat_mean.shape or not math.isfinite(float(vector.dot(vector))):
                return None
            z = np.subtract(vector, self._feat_mean, out=self._feat_z)
            z *= self._feat_scale
            values["features"] = z
            values["labelled_features"] = (z, result.label)
        for key in ("knn", "confidence"):
            if key in values and not math.isfinite(values[key]):
                return None
        return values

    def update(self, result: Result) -> list[DriftSignal]:
        """Feed one frame to every label-free detector; a bad frame is skipped and counted."""
        values = self._inputs(result)
        if values is None:
            self.skipped += 1
            if self.skipped == 1 or self.skipped % 100 == 0:  # a broken camera must not flood the log
                log.warning("frame %d: non-finite detector input, %d frames skipped", result.seq, self.skipped)
            return []
        signals = []
        for watch in self._frame_watches:
            signal = watch.observe(values[watch.input], result.seq)
            if signal is not None:
                signals.append(signal)
        return signals

    def learn_classes(self, classes: Sequence[str]) -> None:
        """The classifier knows these classes now: the prediction-histogram detector takes new ones in."""
        for watch in self._frame_watches:
            if watch.input == "label":
                watch.detector.learn(classes)

    def update_label(self, correct: bool, seq: int = -1) -> list[DriftSignal]:
        """Feed one validated label (was the prediction right?) to the label-based detectors."""
        signals = [watch.observe(bool(correct), seq) for watch in self._label_watches]
        return [s for s in signals if s is not None]

    # -- persistence ---------------------------------------------------------------------
    def save(self, path: str | Path) -> None:
        """Write every detector's state atomically as JSON, its large values to files beside `path`.

        A value of `PART_BYTES` or more (a learned reference, centroids) goes to `<stem>.<digest>.npy` (a list of
        numbers) or `.json`, named after its content and written only when no file holds it yet: a periodic save
        rewrites what changed, not a reference that stays put for thousands of frames. `path` is replaced after
        the parts it names are on disk, and parts no longer named are removed last, so a power cut at any point
        leaves the old state or the new one, each with its parts. Each detector saves its `saved_state()`, which
        leaves out a reference it is still learning (`FeatureCVM`).
        """
        path = Path(path)
        parts: set[str] = set()
        watches = {}
        for w in self.watches:
            state = w.state(saved=True)
            detector = {key: _save_part(path, value, parts) for key, value in state["detector"].items()}
            watches[w.name] = {**state, "detector": detector}
        state = {"version": STATE_VERSION, "fingerprint": self.fingerprint, "skipped": self.skipped}
        write_bytes_atomic(path, _compact({**state, "watches": watches}).encode())
        for old in path.parent.glob(f"{path.stem}.*.*"):
            if old.suffix in (".npy", ".json") and old.name not in parts:
                old.unlink(missing_ok=True)

    def load(self, path: str | Path) -> None:
        """Resume from `save`; `StateError` if the file is corrupt or was written for another config.

        State saved before detectors were added to the configuration (the same configs less those) still
        loads: the saved detectors resume, the added ones start fresh.
        """
        try:
            state = json.loads(Path(path).read_text())
            for saved_watch in state["watches"].values():
                detector = saved_watch["detector"]
                detector.update({key: _load_part(Path(path), value) for key, value in detector.items()})
            saved, names = state["watches"], {w.name for w in self.watches}
            fingerprint_ = state.get("fingerprint")
            added = set(saved) < names and fingerprint_ == self._fingerprint_of(set(saved))
            if state.get("version") != STATE_VERSION or (fingerprint_ != self.fingerprint and not added):
                raise StateError(f"{path}: detector state belongs to another configuration or bundle")
            if set(saved) != names and not added:
                raise StateError(f"{path}: detector state holds {sorted(saved)}")
            for watch in self.watches:
                if watch.name in saved:
                    watch.restore(saved[watch.name])
            if added:
                fresh = sorted(names - set(saved))
                log.info("detectors %s were added since %s was saved: they start fresh", fresh, path)
            self.skipped = int(state["skipped"])
        except StateError:
            raise
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
            raise StateError(f"{path}: cannot read detector state: {exc!r}") from exc

    def _fingerprint_of(self, names: set[str]) -> str:
        """The fingerprint of this configuration restricted to the detectors called `names`."""
        kept = [c for c in self._configs if str(c.get("name", c.get("type"))) in names]
        return fingerprint(kept, self._reference)


def _compact(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


def _save_part(path: Path, value: Any, parts: set[str]) -> Any:
    """`value`, or when it is large, {PART_KEY: name} of the file beside `path` that holds it (written if new).

    A list of floats or of ints goes to `.npy` as the array numpy makes of it (a third of the bytes, and no
    JSON text of it is built), in the narrowest type that holds every value exactly (float32 for floats that
    are all float32 values, as a float32 reference's; rank counts in one byte each); anything else to `.json`.
    """
    array = _exact_array(value)
    if array is not None:
        if array.nbytes < PART_BYTES:
            return value
        array = _narrowest(array)
        digest = hashlib.sha256(f"{array.dtype.str}{array.shape}".encode())
        digest.update(array.data)
        name = f"{path.stem}.{digest.hexdigest()[:16]}.npy"
        if not (path.parent / name).exists():
            write_atomic(path.parent / name, lambda f: np.save(f, array, allow_pickle=False))
    else:
        text = _compact(value)
        if len(text) < PART_BYTES:
            return value
        name = f"{path.stem}.{hashlib.sha256(text.encode()).hexdigest()[:16]}.json"
        if not (path.parent / name).exists():
            write_bytes_atomic(path.parent / name, text.encode())
    parts.add(name)
    return {PART_KEY: name}


def _exact_array(value: Any) -> np.ndarray | None:
    """`value` as an array whose `tolist()` gives it back exactly: a rectangular list of floats, or of ints."""
    if not isinstance(value, list):
        return None
    try:
        array = np.asarray(value)
    except ValueError:  # ragged
        return None
    if array.dtype.kind not in "fi":
        return None
    leaf = float if array.dtype.kind == "f" else int  # not a mix of both, nor bools, which numpy would convert
    return array if all(type(item) is leaf for item in _leaves(value)) else None


def _narrowest(array: np.ndarray) -> np.ndarray:
    """`array` in the smallest type of its kind that holds its values exactly (`tolist()` gives the same numbers)."""
    if not array.size:
        return array
    if array.dtype.kind == "f":
        with np.errstate(over="ignore"):  # a value beyond float32's range becomes inf, and keeps float64
            single = array.astype(np.float32)
        return single if np.array_equal(single.astype(array.dtype), array) else array  # a NaN keeps float64
    if array.dtype.kind != "i":
        return array
    low, high = int(array.min()), int(array.max())
    for dtype in (np.uint8, np.int8, np.uint16, np.int16, np.uint32, np.int32):
        if np.iinfo(dtype).min <= low and high <= np.iinfo(dtype).max:
            return array.astype(dtype)
    return array


def _leaves(value: list[Any]) -> Iterator[Any]:
    for item in value:
        if isinstance(item, list):
            yield from _leaves(item)
        else:
            yield item


def _load_part(path: Path, value: Any) -> Any:
    """A detector's state value as saved beside `path` by `_save_part` (any other value as it is)."""
    if not (isinstance(value, dict) and set(value) == {PART_KEY}):
        return value
    part = path.parent / Path(str(value[PART_KEY])).name
    if part.suffix == ".npy":
        return np.load(part, allow_pickle=False).tolist()
    return json.loads(part.read_text())


def fingerprint(configs: list[dict[str, Any]], reference: dict[str, Any]) -> str:
    """A short hash of the detector configuration and the reference they were built on."""
    blob = json.dumps([configs, reference], sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:16]
