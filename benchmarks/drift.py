"""Drift-detection benchmark: detection delay, misses and false alarms of every detector.

Each stream is 500 in-distribution frames then 300 shifted ones (or 800 clean frames for the
control, which alone defines false alarms). Frames go once through the real pipeline (TFLite
interpreter, transform, one kNN search); every detector then runs over the cached per-frame
signals. river's PageHinkley, ADWIN and KSWIN (default parameters) see the same z-scored
kNN-distance signal as ours. The shipped defaults were tuned with `--first-seed 1000 --seeds 30`;
the report uses seeds 0..N-1.

    python -m benchmarks.drift --seeds 30 --json
"""

from __future__ import annotations

import argparse
import importlib
import json
import statistics
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from device.monitor import DEFAULT_DETECTORS, build_monitor
from device.pipeline.knn import Neighbours
from device.pipeline.result import Result

BUNDLE = Path("device/models/digits")
PRE, POST, HORIZON = 500, 300, 250  # clean frames, shifted frames, samples within which an alarm counts
TUNING_SEEDS = list(range(1000, 1030))
# Camera faults, at the severities of the capture module's defaults:
SCENARIOS = {
    "unseen": "unseen@500",  # digits 6-9, never seen in training, replace the stream
    "gradual-unseen": "gradual-unseen@500:200",  # their share ramps 0 -> 1 over 200 frames
    "noise": "noise@500:40",  # additive Gaussian noise σ = 40 grey levels: high gain in the dark
    "brightness": "brightness@500:0.45",  # exposure x0.45: a lamp switched off
    "blur": "blur@500:1.4",  # Gaussian defocus σ = 1.4 px on a 32 px frame: a lens knocked out of focus
}
CONTROL = "control"


@dataclass
class Stream:
    """The per-frame signals of one stream, as the pipeline produced them."""

    results: list[Result]
    knn: list[float]  # mean neighbour distance, z-scored by the reference


Runner = Callable[[Stream, int], list[int]]  # (stream, seed) -> alarm indices


def record(pipeline: Any, drift: str | None, seed: int) -> list[Result]:
    """Run one stream through the pipeline (no detectors attached) and keep its `Result`s."""
    from device.capture import open_source

    source = open_source("digits", drift=drift, seed=seed, limit=PRE + POST)
    try:
        return [pipeline.process(frame, seq) for seq, frame in enumerate(source)]
    finally:
        source.close()


def to_arrays(results: list[Result]) -> dict[str, np.ndarray]:
    return {
        "distances": np.stack([r.neighbours.distances for r in results]),
        "vectors": np.stack([r.vector for r in results]),
        "confidence": np.array([r.model_confidence for r in results]),
        "labels": np.array([r.label for r in results]),
        "truth": np.array([r.true_label or "" for r in results]),
    }


def from_arrays(arrays: dict[str, np.ndarray]) -> list[Result]:
    """Rebuild lightweight `Result`s from cached arrays (what the detectors read)."""
    k = arrays["distances"].shape[1]
    idx = np.arange(k)
    return [
        Result(
            seq=i,
            label=str(arrays["labels"][i]),
            confidence=1.0,
            model_label=str(arrays["labels"][i]),
            model_confidence=float(arrays["confidence"][i]),
            probabilities=np.zeros(0, dtype=np.float32),
            features=np.zeros(0, dtype=np.float32),
            vector=arrays["vectors"][i],
            neighbours=Neighbours(arrays["distances"][i], idx, ()),
            latency_ms=0.0,
            true_label=str(arrays["truth"][i]),
        )
        for i in range(len(arrays["labels"]))
    ]


def load_streams(seeds: list[int], cache: Path | None, reference: dict[str, Any]) -> dict[str, dict[int, Stream]]:
    """Every (scenario, seed) stream, from `cache` when it has it, else through the pipeline."""
    stored: dict[str, np.ndarray] = {}
    if cache is not None and cache.exists():
        with np.load(cache, allow_pickle=False) as npz:
            stored = dict(npz)
    pipeline = None
    mean, std = reference["knn_distance"]["mean"], reference["knn_distance"]["std"]
    streams: dict[str, dict[int, Stream]] = {}
    for scenario, drift in [(CONTROL, None), *SCENARIOS.items()]:
        streams[scenario] = {}
        for seed in seeds:
            key = f"{scenario}/{seed}"
            if f"{key}/labels" not in stored:
                if pipeline is None:
                    from device.pipeline.pipeline import Pipeline

                    pipeline = Pipeline.from_bundle(BUNDLE, detect=False)
                stored.update({f"{key}/{n}": a for n, a in to_arrays(record(pipeline, drift, seed)).items()})
            arrays = {n: stored[f"{key}/{n}"] for n in ("distances", "vectors", "confidence", "labels", "truth")}
            knn = ((arrays["distances"].mean(axis=1) - mean) / std).tolist()
            streams[scenario][seed] = Stream(from_arrays(arrays), knn)
    if cache is not None and pipeline is not None:
        np.savez(cache, **stored)
    return streams


def ours(configs: list[dict[str, Any]], reference: dict[str, Any], labels: bool = False) -> Runner:
    """Our monitor over `configs`; with `labels`, every frame's true label is validated."""

    def run(stream: Stream, seed: int) -> list[int]:
        monitor = build_monitor(configs, reference)
        alarms = []
        for i, result in enumerate(stream.results):
            signals = monitor.update(result)
            if labels:
                signals += monitor.update_label(result.label == result.true_label, i)
            if signals:
                alarms.append(i)
        return alarms

    return run


def river(name: str, **kwargs: Any) -> Runner:
    """A river drift detector fed the z-scored kNN distance."""
    drift = importlib.import_module("river.drift")

    def run(stream: Stream, seed: int) -> list[int]:
        detector = getattr(drift, name)(**({"seed": seed} if name == "KSWIN" else {}), **kwargs)
        alarms = []
        for i, value in enumerate(stream.knn):
            detector.update(value)
            if detector.drift_detected:
                alarms.append(i)
        return alarms

    return run


def runners(reference: dict[str, Any]) -> dict[str, Runner]:
    """Every detector of the comparison, by its reported name."""
    table: dict[str, Runner] = {
        "tinymlops.default": ours(DEFAULT_DETECTORS, reference),
        "river.PageHinkley": river("PageHinkley"),
        "river.ADWIN": river("ADWIN"),
        "river.KSWIN": river("KSWIN"),
    }
    for config in DEFAULT_DETECTORS:
        table[str(config.get("name", config["type"]))] = ours([config], reference, config["type"] == "accuracy")
    for type_ in ("knn_distance", "knn_cusum", "confidence", "feature_stats", "prediction_distribution"):
        table.setdefault(type_, ours([{"type": type_}], reference))
    return table


def first_delay(alarms: Iterable[int]) -> int | None:
    """Samples from the change to the first alarm at or after it, None if none within HORIZON."""
    delay = next((i - PRE for i in alarms if i >= PRE), None)
    return delay if delay is not None and delay < HORIZON else None


def timed(run: Runner, streams: dict[int, Stream]) -> tuple[dict[int, list[int]], float]:
    started, updates = time.perf_counter(), 0
    alarms = {}
    for seed, stream in streams.items():
        alarms[seed] = run(stream, seed)
        updates += len(stream.results)
    return alarms, (time.perf_counter() - started) * 1e6 / updates


def evaluate(streams: dict[str, dict[int, Stream]], table: dict[str, Runner]) -> dict[str, Any]:
    """{scenario: {detector: metrics}}; the control row holds false alarms, the others delays."""
    control: dict[str, tuple[float, float]] = {}
    for name, run in table.items():
        alarms, us = timed(run, streams[CONTROL])
        n = sum(len(s.results) for s in streams[CONTROL].values())
        control[name] = (1000.0 * sum(len(a) for a in alarms.values()) / n, us)
    report: dict[str, Any] = {}
    for scenario in SCENARIOS:
        report[scenario] = {}
        for name, run in table.items():
            alarms, us = timed(run, streams[scenario])
            delays = [first_delay(a) for a in alarms.values()]
            found = [d for d in delays if d is not None]
            report[scenario][name] = {
                "median_delay": statistics.median(found) if found else None,
                "mean_delay": round(statistics.fmean(found), 2) if found else None,
                "miss_rate": round(1 - len(found) / len(delays), 4),
                "false_alarms_per_1000": round(control[name][0], 3),
                "us_per_update": round((us + control[name][1]) / 2, 2),
            }
    return report


def adaptation(seeds: list[int]) -> dict[str, Any] | None:
    """benchmarks.adaptation's accuracy before/after adaptation, when that benchmark exists."""
    try:
        module = importlib.import_module("benchmarks.adaptation")
    except ModuleNotFoundError as exc:
        if exc.name != "benchmarks.adaptation":
            raise
        return None
    result: dict[str, Any] = module.evaluate(seeds)
    return result


def table_text(report: dict[str, Any]) -> str:
    lines = [f"{'scenario':16} {'detector':24} {'median':>7} {'mean':>7} {'miss':>6} {'FA/1000':>8} {'us':>7}"]
    for scenario, rows in report["scenarios"].items():
        for name, m in rows.items():
            med = "-" if m["median_delay"] is None else f"{m['median_delay']:g}"
            mean = "-" if m["mean_delay"] is None else f"{m['mean_delay']:.1f}"
            lines.append(
                f"{scenario:16} {name:24} {med:>7} {mean:>7} {m['miss_rate']:6.3f} "
                f"{m['false_alarms_per_1000']:8.3f} {m['us_per_update']:7.1f}"
            )
    return "\n".join(lines)


TUNING_FACTORS = [round(0.5 + 0.05 * i, 2) for i in range(31)]  # 0.5x .. 2.0x of the shipped threshold
TUNING_MARGIN = 1.1  # the shipped threshold is this much above the lowest one with no false alarm


def tune(streams: dict[str, dict[int, Stream]], reference: dict[str, Any]) -> list[dict[str, Any]]:
    """Thresholds from the tuning control streams only: `TUNING_MARGIN` x the lowest with no alarm on any."""
    tuned = []
    for config in DEFAULT_DETECTORS:
        if config["type"] == "accuracy":  # label-based: no control stream defines its false alarms
            tuned.append(config)
            continue
        for factor in TUNING_FACTORS:
            candidate = {**config, "threshold": round(config["threshold"] * factor, 4)}
            run = ours([candidate], reference)
            if not any(run(stream, seed) for seed, stream in streams[CONTROL].items()):
                break
        tuned.append({**candidate, "threshold": round(candidate["threshold"] * TUNING_MARGIN, 3)})
    return tuned


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=30, help="streams per scenario")
    parser.add_argument("--first-seed", type=int, default=0, help="1000 selects the tuning seeds")
    parser.add_argument("--json", action="store_true", help="print JSON (default: a table)")
    parser.add_argument("--cache", type=Path, help="an .npz to keep the per-frame signals between runs")
    parser.add_argument("--no-adaptation", action="store_true", help="skip benchmarks.adaptation")
    parser.add_argument("--tune", action="store_true", help="propose thresholds from the tuning seeds' controls")
    args = parser.parse_args(argv)
    seeds = list(range(args.first_seed, args.first_seed + args.seeds))
    reference = json.loads((BUNDLE / "drift_reference.json").read_text())
    if args.tune:
        print(json.dumps(tune(load_streams(TUNING_SEEDS, args.cache, reference), reference), indent=2))
        return 0
    streams = load_streams(seeds, args.cache, reference)
    report: dict[str, Any] = {
        "seeds": {"evaluation": seeds, "tuning": TUNING_SEEDS},
        "stream": {"clean": PRE, "shifted": POST, "horizon": HORIZON, "control": PRE + POST},
        "severities": SCENARIOS,
        "default_detectors": DEFAULT_DETECTORS,
        "baselines": {
            "river": importlib.import_module("river").__version__,
            "input": "mean distance to the k neighbours, z-scored by drift_reference.json",
            "parameters": "river defaults (KSWIN seeded with the stream's seed)",
        },
        "scenarios": evaluate(streams, runners(reference)),
    }
    result = None if args.no_adaptation else adaptation(seeds)
    if result is not None:
        report["adaptation"] = result
    print(json.dumps(report, indent=2) if args.json else table_text(report))
    if result is None and not args.no_adaptation:
        print("benchmarks.adaptation is missing: no adaptation figures", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
