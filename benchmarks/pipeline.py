"""Per-frame cost of the whole pipeline against a plain TFLite app, measured side by side in one run.

`python -m benchmarks.pipeline --json` on the MobileNetV2 fixture (224x224 int8, 1280-d features):
the plain app is preprocessing + `invoke` + reading the outputs; the pipeline adds transform
1280->256, one kNN search over 200x256, the detectors and the outbox insert. Runs alternate
frame by frame so both see the same machine load; the ratio of medians is reported.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from device.capture.base import Frame
from device.capture.digits import DigitsSource
from device.config import Config
from device.outbox import Outbox
from device.pipeline.extract import interpreter_class
from device.pipeline.pipeline import Pipeline
from device.service import Runner, prediction_record

FIXTURE = Path(__file__).resolve().parent / "fixtures" / "mobilenetv2"


def frames(size: int, n: int, seed: int = 0) -> list[Frame]:
    """Rendered digits scaled up to the model's input, like a camera configured to that size."""
    out = []
    for f in DigitsSource(seed=seed, limit=n):
        img = np.asarray(Image.fromarray(f.image).resize((size, size), Image.Resampling.BILINEAR))
        out.append(Frame(img, label=f.label))
    return out


class PlainApp:
    """What any TFLite program does per frame: preprocess, invoke, read the outputs."""

    def __init__(self, model: Path, threads: int) -> None:
        self.interp = interpreter_class()(model_path=str(model), num_threads=threads)
        self.interp.allocate_tensors()
        self.inp = self.interp.get_input_details()[0]
        self.outs = [d["index"] for d in self.interp.get_output_details()]

    def __call__(self, frame: Frame) -> list[np.ndarray]:
        self.interp.set_tensor(self.inp["index"], np.ascontiguousarray(frame.image[None], dtype=self.inp["dtype"]))
        self.interp.invoke()
        return [self.interp.get_tensor(i) for i in self.outs]


def _median_us(fn: Callable[[], Any], n: int) -> float:
    times = []
    for _ in range(n):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times) * 1e6


def stage_costs(pipeline: Pipeline, runner: Runner, frame: Frame, n: int) -> dict[str, float]:
    """Median cost of each stage the pipeline adds, on one real frame's intermediates."""
    result = runner.step(frame, 0)
    assert result is not None and pipeline.monitor is not None
    monitor = pipeline.monitor
    features, knn, transform = result.features, pipeline.classifier, pipeline.transform
    record = prediction_record(result, pipeline.bundle.version)
    assert runner.outbox is not None
    outbox = runner.outbox
    return {
        "transform_us": _median_us(lambda: transform(features), n),
        "knn_us": _median_us(lambda: knn.vote(knn.search(result.vector)), n),
        "detectors_us": _median_us(lambda: monitor.update(result), n),
        "outbox_us": _median_us(lambda: outbox.append("prediction", record), n),
    }


def run(bundle: Path, n_frames: int, threads: int) -> dict[str, Any]:
    config = Config()
    config.feature_extractor.num_threads = threads
    pipeline = Pipeline.from_bundle(bundle, config)
    plain = PlainApp(bundle / "model.tflite", threads)
    with tempfile.TemporaryDirectory() as tmp:
        runner = Runner(pipeline, Outbox(Path(tmp) / "outbox.db"), config.outbox)
        stream = frames(pipeline.bundle.input.shape[1], 64)
        for f in stream[:5]:  # warm-up: allocations, caches, first-invoke costs
            plain(f)
            runner.step(f, 0)
        t_plain: list[float] = []
        t_pipe: list[float] = []
        for i in range(n_frames):
            f = stream[i % len(stream)]
            for run_plain in (i % 2 == 0, i % 2 == 1):  # alternate which goes first
                t = time.perf_counter()
                if run_plain:
                    plain(f)
                else:
                    runner.step(f, i)
                (t_plain if run_plain else t_pipe).append(time.perf_counter() - t)
        stages = stage_costs(pipeline, runner, stream[0], 2000)
    plain_ms, pipe_ms = statistics.median(t_plain) * 1e3, statistics.median(t_pipe) * 1e3
    return {
        "model": pipeline.bundle.name,
        "input": list(pipeline.bundle.input.shape),
        "frames": n_frames,
        "threads": threads,
        "plain_ms_p50": round(plain_ms, 3),
        "pipeline_ms_p50": round(pipe_ms, 3),
        "overhead_ratio": round(pipe_ms / plain_ms, 4),
        **{k: round(v, 1) for k, v in stages.items()},
        "reference_set": [len(pipeline.classifier), pipeline.classifier.dim],
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--bundle", type=Path, default=FIXTURE)
    parser.add_argument("--frames", type=int, default=300)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json", action="store_true", help="print JSON only (the default output anyway)")
    args = parser.parse_args()
    print(json.dumps(run(args.bundle, args.frames, args.threads), indent=None if args.json else 2))


if __name__ == "__main__":
    main()
