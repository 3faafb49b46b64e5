"""The appliance's main loop: capture -> pipeline -> outbox, with skipped frames counted, never fatal."""

from __future__ import annotations

import io
import logging
import signal
import threading
import time
from collections import deque
from collections.abc import Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from device.capture.base import Frame
from device.config import OutboxConfig
from device.errors import FrameError
from device.outbox import Outbox
from device.pipeline.pipeline import Pipeline
from device.result import Result

if TYPE_CHECKING:
    from device.monitor.monitor import DriftSignal

log = logging.getLogger(__name__)
MAX_EVENT_JPEG = 32 * 1024  # bytes; a drift event's frame is re-encoded smaller until it fits


def encode_jpeg(image: np.ndarray, max_side: int, quality: int) -> bytes:
    """Downscale to `max_side` and JPEG-encode, lowering quality until under `MAX_EVENT_JPEG`.

    PIL is imported by the first drift event, not at start: a device that sees none never loads it."""
    from PIL import Image

    img = Image.fromarray(image)
    if max(img.size) > max_side:
        img.thumbnail((max_side, max_side))
    while True:
        buf = io.BytesIO()
        img.save(buf, format="JPEG", quality=quality)
        if buf.tell() <= MAX_EVENT_JPEG or quality <= 20:
            return buf.getvalue()
        quality -= 15


@dataclass
class Stats:
    """Counters of one run, reported in the summary and the heartbeat; percentiles over `window` frames."""

    window: int | None = None  # recent frames kept for percentiles and rates (None: all, for replays)
    frames: int = 0
    skipped: int = 0
    drift_events: int = 0
    adaptations: int = 0
    correct: int = 0
    labelled: int = 0
    first_drift_seq: int | None = None
    latencies: deque[float] = field(init=False)
    alarms: deque[int] = field(init=False)  # drift alarms on each recent frame

    def __post_init__(self) -> None:
        self.latencies = deque(maxlen=self.window)
        self.alarms = deque(maxlen=self.window)

    def new_window(self) -> None:
        """Forget the recent latencies and alarms (another model took over); counters keep counting."""
        self.latencies.clear()
        self.alarms.clear()

    def latency_ms(self, q: float) -> float:
        return round(float(np.percentile(np.asarray(self.latencies), q)), 3) if self.latencies else 0.0

    def drift_alarm_rate(self) -> float:
        """Drift alarms per 1000 frames over the recent window."""
        return round(1000.0 * sum(self.alarms) / len(self.alarms), 3) if self.alarms else 0.0

    def summary(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "samples": self.frames,
            "skipped": self.skipped,
            "drift_events": self.drift_events,
            "adaptations": self.adaptations,
            "latency_ms_p50": self.latency_ms(50),
            "latency_ms_p95": self.latency_ms(95),
        }
        if self.labelled:
            out["accuracy"] = round(self.correct / self.labelled, 4)
        out["first_drift_seq"] = self.first_drift_seq
        return out


class Runner:
    """Processes frames and records what they produced; bad frames are logged and counted.

    `run(..., overlap=True)` decides and observes frame N (transform, kNN, detectors, adapter, outbox)
    on a worker thread while the interpreter runs frame N+1 (it releases the GIL); frame N+1 goes to
    the worker only once frame N is done, so the classifier is never read and changed at once and
    nothing is reordered.
    """

    def __init__(self, pipeline: Pipeline, outbox: Outbox | None = None, outbox_cfg: OutboxConfig | None = None,
                 window: int | None = None):
        self.pipeline = pipeline
        self.outbox = outbox
        self.outbox_cfg = outbox_cfg or OutboxConfig()
        self.stats = Stats(window)
        self.stop = threading.Event()

    def step(self, frame: Frame, seq: int) -> Result | None:
        """Decide and observe one frame inline; None for a frame that was skipped."""
        result = self.decide(frame, seq)
        if result is not None:
            self.observe(frame, result)
        return result

    def decide(self, frame: Frame, seq: int) -> Result | None:
        started = time.perf_counter()
        try:
            return self.pipeline.classify(frame, seq, *self.pipeline.extract(frame), started)
        except FrameError as exc:
            self._skip(seq, exc)
            return None

    def observe(self, frame: Frame, result: Result) -> Result:
        self.pipeline.observe(result)
        self._count(result)
        if self.outbox is not None:
            self._record(frame, result)
        return result

    def _count(self, result: Result) -> None:
        s = self.stats
        s.frames += 1
        s.latencies.append(result.latency_ms)
        s.drift_events += len(result.drift)
        s.alarms.append(len(result.drift))
        if result.drift and s.first_drift_seq is None:
            s.first_drift_seq = result.seq
        s.adaptations += len(self.pipeline.events)
        if result.true_label is not None:
            s.labelled += 1
            s.correct += int(result.true_label == result.label)

    def _record(self, frame: Frame, result: Result) -> None:
        assert self.outbox is not None
        version = self.pipeline.bundle.version
        self.outbox.append("prediction", prediction_record(result, version))
        if result.drift:
            jpeg = encode_jpeg(frame.image, self.outbox_cfg.image_max_side, self.outbox_cfg.jpeg_quality)
            for signal_ in self.pipeline.signals:
                event = alarm_record(signal_)
                self.outbox.append("drift_event", {**event, **drift_context(result, version)}, blob=jpeg)
        for event in self.pipeline.events:
            self.outbox.append("adaptation", {**event, "frame_seq": result.seq, "model_version": version})

    def run(self, frames: Iterable[Frame], start_seq: int = 0, overlap: bool = False) -> Iterator[Result]:
        """Process frames until the source ends or `stop` is set; yields each result once observed."""
        if not overlap:
            for seq, frame in enumerate(frames, start=start_seq):
                if self.stop.is_set():
                    return
                result = self.step(frame, seq)
                if result is not None:
                    yield result
            return
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="observe") as worker:
            yield from self._overlapped(frames, start_seq, worker)

    def _overlapped(self, frames: Iterable[Frame], start_seq: int, worker: ThreadPoolExecutor) -> Iterator[Result]:
        pending: tuple[int, Future[Result | FrameError]] | None = None
        for seq, frame in enumerate(frames, start=start_seq):
            if self.stop.is_set():
                break
            started, extracted_by = time.perf_counter(), self.pipeline
            try:
                outputs = extracted_by.infer(frame)  # the interpreter runs while frame N-1 is decided and observed
            except FrameError as exc:
                self._skip(seq, exc)
                continue
            if pending is not None:
                if (done := self._settle(*pending)) is not None:
                    yield done
                pending = None
            try:
                if self.pipeline is not extracted_by:  # the consumer switched bundles meanwhile
                    outputs = self.pipeline.infer(frame)
            except FrameError as exc:
                self._skip(seq, exc)
                continue
            pending = seq, worker.submit(self._finish, self.pipeline, frame, seq, outputs, started)
        if pending is not None and (done := self._settle(*pending)) is not None:
            yield done

    def _finish(self, pipeline: Pipeline, frame: Frame, seq: int, outputs: tuple[np.ndarray, np.ndarray],
                started: float) -> Result | FrameError:
        """On the worker: decide and observe one inferred frame (a bad one is handed back, counted by the caller)."""
        try:
            result = pipeline.classify(frame, seq, *pipeline.extractor.dequantize(outputs), started)
        except FrameError as exc:
            return exc
        return self.observe(frame, result)

    def _settle(self, seq: int, future: Future[Result | FrameError]) -> Result | None:
        """The worker's outcome for frame `seq`: its result, or None (counted) when it was skipped."""
        done = future.result()
        if isinstance(done, Result):
            return done
        self._skip(seq, done)
        return None

    def _skip(self, seq: int, exc: FrameError) -> None:
        self.stats.skipped += 1
        log.warning("skipping frame %d: %s", seq, exc)

    def stop_on_signals(self) -> None:
        """SIGTERM/SIGINT end the loop after the frame in progress."""
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: self.stop.set())


def prediction_record(result: Result, model_version: str) -> dict[str, Any]:
    return {
        "frame_seq": result.seq,
        "label": result.label,
        "confidence": round(result.confidence, 4),
        "model_label": result.model_label,
        "model_confidence": round(result.model_confidence, 4),
        "latency_ms": round(result.latency_ms, 3),
        "drift": result.drift,
        "model_version": model_version,
    }


def alarm_record(signal_: DriftSignal) -> dict[str, Any]:
    """What a drift event says of the alarm itself; the frame's context is added by the caller."""
    return {"detector": signal_.detector, "statistic": signal_.statistic, "threshold": signal_.threshold}


def drift_context(result: Result, model_version: str) -> dict[str, Any]:
    return {
        "frame_seq": result.seq,
        "label": result.label,
        "confidence": round(result.confidence, 4),
        "model_version": model_version,
        "vector": [round(float(v), 5) for v in result.vector],
    }
