"""Per-frame cost of the whole pipeline against a plain TFLite app, measured side by side in one run.

`python -m benchmarks.pipeline --json` on the MobileNetV2 fixture (224x224 int8, 1280-d features):
the plain app is preprocessing + `invoke` + reading the outputs; the pipeline adds transform
1280->256, one kNN search over 200x256, the detectors, the adapter and the outbox insert. Blocks of
frames alternate between the contenders so all see the same machine load; the ratio of the median
per-frame wall times is reported for the sequential loop (`overhead_ratio_sequential`) and for the loop
that decides and observes frame N on a thread while the interpreter runs frame N+1
(`overhead_ratio_overlapped`); `overhead_ratio` is the one `tinylcm run` picks with these interpreter
threads on this machine (`device.overlap` unset: overlapped when a core is free beside them). The
`cpu_ratio_*` figures compare CPU time per frame (all threads): what the pipeline costs in energy.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from device.capture.base import Frame
from device.capture.digits import DigitsSource
from device.config import Config, FeatureExtractorConfig, overlap_enabled
from device.outbox import Outbox, outbox_settings_from
from device.pipeline.extract import interpreter_class
from device.pipeline.pipeline import Pipeline
from device.runner import Runner, prediction_record

FIXTURE = Path(__file__).resolve().parent / "fixtures" / "mobilenetv2"


def frames(size: int, n: int, seed: int = 0) -> list[Frame]:
    """Rendered digits at the model's input, like a camera configured to that size."""
    return list(DigitsSource(seed=seed, limit=n, size=(size, size)))


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


def _block_ms(fn: Callable[[list[Frame]], Any], block: list[Frame]) -> tuple[float, float]:
    """Mean wall and CPU (all threads) time per frame of one block, in ms."""
    t, c = time.perf_counter(), time.process_time()
    fn(block)
    return (time.perf_counter() - t) * 1e3 / len(block), (time.process_time() - c) * 1e3 / len(block)


def run(bundle: Path, blocks: int, block_size: int, threads: int) -> dict[str, Any]:
    config = Config(feature_extractor=FeatureExtractorConfig(num_threads=threads))
    pipeline = Pipeline.from_bundle(bundle, config)
    plain = PlainApp(bundle / "model.tflite", threads)
    with tempfile.TemporaryDirectory() as tmp:
        outbox = Outbox(Path(tmp) / "outbox.db", outbox_settings_from(config.outbox))  # as `tinylcm run` opens it
        runner = Runner(pipeline, outbox, config.outbox)
        stream = frames(pipeline.bundle.input.shape[1], 64)
        contenders: dict[str, Callable[[list[Frame]], Any]] = {
            "plain": lambda fs: [plain(f) for f in fs],
            "pipeline": lambda fs: list(runner.run(fs, overlap=False)),  # `tinylcm run` and `replay`
            "overlapped": lambda fs: list(runner.run(fs, overlap=True)),  # `device.overlap: true`
        }
        for fn in contenders.values():  # warm-up: allocations, caches, first-invoke costs
            fn(stream[:5])
        per_block: dict[str, list[float]] = {name: [] for name in contenders}
        cpu_block: dict[str, list[float]] = {name: [] for name in contenders}
        for b in range(blocks):  # blocks rotate their order, so all see the same machine load
            start = (b * block_size) % len(stream)
            block = (stream * 2)[start : start + block_size]
            names = list(contenders)[b % 3 :] + list(contenders)[: b % 3]
            for name in names:
                wall, cpu = _block_ms(contenders[name], block)
                per_block[name].append(wall)
                cpu_block[name].append(cpu)
        outbox_stats = runner.outbox.stats() if runner.outbox else {}  # drops in the loop, not in the stage timing
        stages = stage_costs(pipeline, runner, stream[0], 2000)
        outbox.close()
    med = {name: statistics.median(times) for name, times in per_block.items()}
    cpu = {name: statistics.median(times) for name, times in cpu_block.items()}
    loop = "overlapped" if overlap_enabled(config) else "pipeline"
    return {
        "model": pipeline.bundle.name,
        "input": list(pipeline.bundle.input.shape),
        "frames": blocks * block_size,
        "threads": threads,
        "plain_ms_p50": round(med["plain"], 3),
        "pipeline_ms_p50": round(med[loop], 3),
        "loop": "overlapped" if loop == "overlapped" else "sequential",
        "overhead_ratio": round(med[loop] / med["plain"], 4),
        "overhead_ratio_sequential": round(med["pipeline"] / med["plain"], 4),
        "overhead_ratio_overlapped": round(med["overlapped"] / med["plain"], 4),
        "cpu_ratio_sequential": round(cpu["pipeline"] / cpu["plain"], 4),
        "cpu_ratio_overlapped": round(cpu["overlapped"] / cpu["plain"], 4),
        **{k: round(v, 1) for k, v in stages.items()},
        "reference_set": [len(pipeline.classifier), pipeline.classifier.dim],
        "outbox_dropped": outbox_stats.get("dropped", 0),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--bundle", type=Path, default=FIXTURE)
    parser.add_argument("--blocks", type=int, default=100,
                        help="blocks of frames per contender (more blocks: less noise on a shared host)")
    parser.add_argument("--block-size", type=int, default=20, help="frames per block")
    parser.add_argument("--threads", type=int, default=max(1, (os.cpu_count() or 2) // 2),
                        help="interpreter threads (default: half the cores, as the device config gives it 2 of 4)")
    parser.add_argument("--json", action="store_true", help="print JSON only (the default output anyway)")
    args = parser.parse_args()
    print(json.dumps(run(args.bundle, args.blocks, args.block_size, args.threads), indent=None if args.json else 2))


if __name__ == "__main__":
    main()
