"""Drift-detection benchmark: detection delay, misses and false alarms of every detector.

Each stream is 500 in-distribution frames then 300 shifted ones (or 800 clean frames for a
control stream, which alone defines false alarms; at least 30 of them, 24,000 frames). Frames go
once through the real pipeline (TFLite interpreter, transform, one kNN search); every detector then
runs over the cached per-frame signals. Baselines:

- river's PageHinkley, ADWIN and KSWIN on the same z-scored kNN-distance signal as ours, with their
  defaults and calibrated to our false-alarm count;
- alibi-detect's online CVM, LSDD and MMD on the 16-d PCA vectors, their reference taken from the
  tuning seeds' control streams and their ERT calibrated to our false-alarm count
  (`benchmarks.drift_alibi`, run in its own environment: `--alibi-python`).

Calibration gives each baseline the most sensitive setting whose counted false alarms on the
evaluation control streams do not exceed those of `tinymlops.default`. Every baseline is reset after
an alarm, and an alarm within 100 frames of the last counted one is not counted, as for each of ours.
Our thresholds come from the tuning seeds only (`--tune`); the report uses seeds 0..N-1.

    python -m benchmarks.drift --seeds 30 --json
"""

from __future__ import annotations

import argparse
import hashlib
import importlib
import json
import math
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.drift_calibration import calibrate, counted
from device.knn import Neighbours
from device.monitor import DEFAULT_DETECTORS, build_monitor
from device.result import Result

BUNDLE = Path("device/models/digits")
PRE, POST, HORIZON = 500, 300, 250  # clean frames, shifted frames, samples within which an alarm counts
TUNING_SEEDS = list(range(1000, 1030))
MIN_CONTROLS = 30  # control streams, at least: 8,000 frames cannot tell 0.06 from 0.2 false alarms per 1,000
# Camera faults, at the severities of the capture module's defaults:
SCENARIOS = {
    "unseen": "unseen@500",  # digits 6-9, never seen in training, replace the stream
    "gradual-unseen": "gradual-unseen@500:200",  # their share ramps 0 -> 1 over 200 frames
    "noise": "noise@500:40",  # additive Gaussian noise σ = 40 grey levels: high gain in the dark
    "brightness": "brightness@500:0.45",  # exposure x0.45: a lamp switched off
    "blur": "blur@500:1.4",  # Gaussian defocus σ = 1.4 px on a 32 px frame: a lens knocked out of focus
}
CONTROL = "control"
OURS = "tinymlops.default"
# river detectors calibrated to our false alarms: the parameter, its sensitive and its quiet end.
RIVER = {
    "PageHinkley": ("threshold", 1.0, 5000.0),
    "ADWIN": ("delta", 0.5, 1e-12),
    "KSWIN": ("alpha", 0.5, 1e-12),
}
RIVER_STEPS = 10
ALIBI_PYTHON = Path(".venvs/bench/bin/python")
ALIBI_DETECTORS = {"cvm": "alibi.CVM", "lsdd": "alibi.LSDD", "mmd": "alibi.MMD"}
ALIBI_REFERENCE = 200  # reference frames for alibi, evenly spaced over the tuning seeds' control streams


@dataclass
class Stream:
    """The per-frame signals of one stream, as the pipeline produced them."""

    results: list[Result]
    knn: list[float]  # mean neighbour distance, z-scored by the reference
    vectors: np.ndarray  # (frames, d) PCA vectors


Runner = Callable[[Stream, int], list[int]]  # (stream, seed) -> alarm indices
Streams = dict[str, dict[int, Stream]]  # scenario -> seed -> stream
Alarms = dict[str, dict[int, list[int]]]  # scenario -> seed -> alarm indices


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


def load_streams(
    seeds: list[int], cache: Path | None, reference: dict[str, Any], controls: list[int] | None = None
) -> Streams:
    """Every scenario's stream for `seeds` and the control streams of `controls` (default: `seeds`),
    from `cache` when it has them, else through the pipeline."""
    stored: dict[str, np.ndarray] = {}
    if cache is not None and cache.exists():
        with np.load(cache, allow_pickle=False) as npz:
            stored = dict(npz)
    pipeline = None
    mean, std = reference["knn_distance"]["mean"], reference["knn_distance"]["std"]
    streams: Streams = {}
    for scenario, drift in [(CONTROL, None), *SCENARIOS.items()]:
        streams[scenario] = {}
        for seed in (controls or seeds) if scenario == CONTROL else seeds:
            key = f"{scenario}/{seed}"
            if f"{key}/labels" not in stored:
                if pipeline is None:
                    from device.pipeline.pipeline import Pipeline

                    pipeline = Pipeline.from_bundle(BUNDLE, detect=False)
                stored.update({f"{key}/{n}": a for n, a in to_arrays(record(pipeline, drift, seed)).items()})
            arrays = {n: stored[f"{key}/{n}"] for n in ("distances", "vectors", "confidence", "labels", "truth")}
            knn = ((arrays["distances"].mean(axis=1) - mean) / std).tolist()
            streams[scenario][seed] = Stream(from_arrays(arrays), knn, arrays["vectors"])
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
    """A river drift detector fed the z-scored kNN distance, reset after an alarm (river does so itself)."""
    drift = importlib.import_module("river.drift")

    def run(stream: Stream, seed: int) -> list[int]:
        detector = getattr(drift, name)(**({"seed": seed} if name == "KSWIN" else {}), **kwargs)
        alarms = []
        for i, value in enumerate(stream.knn):
            detector.update(value)
            if detector.drift_detected:
                alarms.append(i)
        return counted(alarms)

    return run


def runners(reference: dict[str, Any]) -> dict[str, Runner]:
    """Every detector of the comparison that needs no calibration, by its reported name."""
    table: dict[str, Runner] = {OURS: ours(DEFAULT_DETECTORS, reference)}
    table.update({f"river.{name}": river(name) for name in RIVER})
    for config in DEFAULT_DETECTORS:
        table[str(config.get("name", config["type"]))] = ours([config], reference, config["type"] == "accuracy")
    for type_ in ("knn_distance", "knn_cusum", "confidence", "feature_stats", "prediction_distribution"):
        table.setdefault(type_, ours([{"type": type_}], reference))
    return table


def first_delay(alarms: Iterable[int]) -> int | None:
    """Samples from the change to the first alarm at or after it, None if none within HORIZON."""
    delay = next((i - PRE for i in alarms if i >= PRE), None)
    return delay if delay is not None and delay < HORIZON else None


def collect(run: Runner, streams: Streams) -> tuple[Alarms, float]:
    """The alarms of `run` on every stream, and its cost in µs of CPU time per update (the machine is shared)."""
    started, updates = time.process_time(), 0
    alarms: Alarms = {}
    for scenario, by_seed in streams.items():
        alarms[scenario] = {}
        for seed, stream in by_seed.items():
            alarms[scenario][seed] = run(stream, seed)
            updates += len(stream.results)
    return alarms, (time.process_time() - started) * 1e6 / updates


def control_alarms(run: Runner, streams: Streams, limit: int) -> int:
    """Alarms of `run` on the control streams, counting stopped once past `limit`."""
    total = 0
    for seed, stream in streams[CONTROL].items():
        total += len(run(stream, seed))
        if total > limit:
            break
    return total


def river_calibrated(streams: Streams, limit: int) -> tuple[dict[str, Runner], dict[str, Any]]:
    """river's detectors at the most sensitive parameter with at most `limit` false alarms."""
    table: dict[str, Runner] = {}
    settings: dict[str, Any] = {}
    for name, (parameter, sensitive, quiet) in RIVER.items():
        value, trials = calibrate(
            lambda v: control_alarms(river(name, **{parameter: v}), streams, limit),  # noqa: B023 - called at once
            sensitive,
            quiet,
            limit,
            RIVER_STEPS,
        )
        table[f"river.{name}.calibrated"] = river(name, **{parameter: value})
        settings[f"river.{name}.calibrated"] = {parameter: value, "calibration": trials}
    return table, settings


def alibi(
    python: Path, detectors: list[str], streams: Streams, tuning: Streams, limit: int, cache: Path | None
) -> tuple[dict[str, tuple[Alarms, float]], dict[str, Any]]:
    """alibi-detect's online detectors, calibrated to `limit` false alarms, run by `python`.

    ({name: (alarms, µs per update)}, their settings); ({}, {"error": ...}) when that environment
    has no alibi-detect. Results are kept in `cache`'s directory, keyed by the streams and settings.
    """
    reference = np.concatenate([s.vectors for s in tuning[CONTROL].values()])
    arrays = {"reference": reference[np.linspace(0, len(reference) - 1, ALIBI_REFERENCE).astype(int)]}
    arrays.update({f"{scenario}/{seed}": s.vectors for scenario, by in streams.items() for seed, s in by.items()})
    digest = hashlib.sha256(json.dumps([detectors, limit]).encode())
    for key in sorted(arrays):
        digest.update(key.encode() + np.ascontiguousarray(arrays[key]).tobytes())
    stored = None if cache is None else cache.with_name(f"{cache.stem}-alibi-{digest.hexdigest()[:16]}.json")
    if stored is not None and stored.exists():
        output = json.loads(stored.read_text())
    else:
        if not python.exists():
            return {}, {"error": f"{python} does not exist: see the README for the alibi-detect environment"}
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "streams.npz"
            np.savez(path, **arrays)
            command = [str(python), "-m", "benchmarks.drift_alibi", str(path), "--max-false-alarms", str(limit)]
            command += ["--detectors", ",".join(detectors)]
            if cache is not None:
                command += ["--cache", str(cache.parent)]
            done = subprocess.run(command, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise RuntimeError(f"benchmarks.drift_alibi failed:\n{done.stderr[-4000:]}")
        output = json.loads(done.stdout.strip().splitlines()[-1])
        if "error" in output:
            return {}, output
        if stored is not None:
            stored.write_text(json.dumps(output))
    results, settings = {}, {"version": output["version"]}
    for key, found in output["detectors"].items():
        alarms = {scenario: {int(seed): a for seed, a in by.items()} for scenario, by in found["alarms"].items()}
        results[ALIBI_DETECTORS[key]] = (alarms, float(found["us_per_update"]))
        settings[ALIBI_DETECTORS[key]] = {"ert": found["ert"], **found["config"]}
    return results, settings


def summarise(alarms: Alarms, us: float) -> dict[str, dict[str, Any]]:
    """{scenario: metrics} of one detector; false alarms come from the control streams alone."""
    false_alarms = sum(len(a) for a in alarms[CONTROL].values())
    frames = len(alarms[CONTROL]) * (PRE + POST)
    rows = {}
    for scenario in SCENARIOS:
        delays = [first_delay(a) for a in alarms[scenario].values()]
        found = [d for d in delays if d is not None]
        rows[scenario] = {
            "median_delay": statistics.median(found) if found else None,
            "mean_delay": round(statistics.fmean(found), 2) if found else None,
            "miss_rate": round(1 - len(found) / len(delays), 4),
            "false_alarms_per_1000": round(1000.0 * false_alarms / frames, 3),
            "false_alarms": false_alarms,
            "us_per_update": round(us, 2),
        }
    return rows


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
    lines = [f"{'scenario':16} {'detector':32} {'median':>7} {'mean':>7} {'miss':>6} {'FA/1000':>8} {'us':>8}"]
    for scenario, rows in report["scenarios"].items():
        for name, m in rows.items():
            med = "-" if m["median_delay"] is None else f"{m['median_delay']:g}"
            mean = "-" if m["mean_delay"] is None else f"{m['mean_delay']:.1f}"
            lines.append(
                f"{scenario:16} {name:32} {med:>7} {mean:>7} {m['miss_rate']:6.3f} "
                f"{m['false_alarms_per_1000']:8.3f} {m['us_per_update']:8.1f}"
            )
    return "\n".join(lines)


TUNING_MARGIN = 1.1  # the shipped threshold is this much above the lowest one with no false alarm
TUNING_STEPS = 16  # bisections of the threshold (to 0.01 % of its start)


def quiet_from(config: dict[str, Any], reference: dict[str, Any], streams: Streams) -> float:
    """The lowest threshold of `config` that raises no alarm on any control stream, by bisection."""

    def quiet(threshold: float) -> bool:
        run = ours([{**config, "threshold": threshold}], reference)
        return not any(run(stream, seed) for seed, stream in streams[CONTROL].items())

    low, high = 0.0, float(config["threshold"])
    while not quiet(high):
        low, high = high, 2.0 * high
    for _ in range(TUNING_STEPS):
        middle = (low + high) / 2
        low, high = (low, middle) if quiet(middle) else (middle, high)
    return high


def tune(streams: Streams, reference: dict[str, Any]) -> list[dict[str, Any]]:
    """Thresholds from the tuning control streams only: `TUNING_MARGIN` x the lowest with no alarm on any."""
    tuned = []
    for config in DEFAULT_DETECTORS:
        if config["type"] == "accuracy":  # label-based: no control stream defines its false alarms
            tuned.append(config)
            continue
        threshold = TUNING_MARGIN * quiet_from(config, reference, streams)
        scale = 10.0 ** (2 - math.floor(math.log10(threshold)))  # three significant digits, rounded up
        tuned.append({**config, "threshold": math.ceil(threshold * scale) / scale})
    return tuned


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=30, help="streams per scenario")
    parser.add_argument("--first-seed", type=int, default=0, help="1000 selects the tuning seeds")
    parser.add_argument("--json", action="store_true", help="print JSON (default: a table)")
    parser.add_argument("--cache", type=Path, help="an .npz to keep the per-frame signals between runs")
    parser.add_argument("--no-adaptation", action="store_true", help="skip benchmarks.adaptation")
    parser.add_argument("--tune", action="store_true", help="propose thresholds from the tuning seeds' controls")
    parser.add_argument("--alibi-python", type=Path, default=ALIBI_PYTHON, help="an interpreter with alibi-detect")
    parser.add_argument("--alibi", default="cvm,lsdd,mmd", help="alibi-detect detectors to run ('' for none)")
    args = parser.parse_args(argv)
    seeds = list(range(args.first_seed, args.first_seed + args.seeds))
    controls = list(range(args.first_seed, args.first_seed + max(args.seeds, MIN_CONTROLS)))
    reference = json.loads((BUNDLE / "drift_reference.json").read_text())
    if args.tune:
        print(json.dumps(tune(load_streams(TUNING_SEEDS, args.cache, reference), reference), indent=2))
        return 0
    streams = load_streams(seeds, args.cache, reference, controls)
    results = {name: collect(run, streams) for name, run in runners(reference).items()}
    limit = sum(len(a) for a in results[OURS][0][CONTROL].values())
    calibrated, settings = river_calibrated(streams, limit)
    results.update({name: collect(run, streams) for name, run in calibrated.items()})
    wanted = [d for d in args.alibi.split(",") if d]
    if wanted:
        tuning = load_streams(TUNING_SEEDS, args.cache, reference)
        found, settings["alibi"] = alibi(args.alibi_python, wanted, streams, tuning, limit, args.cache)
        results.update(found)
        if not found:
            print(f"alibi-detect baselines skipped: {settings['alibi']['error']}", file=sys.stderr)
    summaries = {name: summarise(alarms, us) for name, (alarms, us) in results.items()}
    report: dict[str, Any] = {
        "seeds": {"evaluation": seeds, "control": controls, "tuning": TUNING_SEEDS},
        "stream": {"clean": PRE, "shifted": POST, "horizon": HORIZON, "control_frames": len(controls) * (PRE + POST)},
        "severities": SCENARIOS,
        "default_detectors": DEFAULT_DETECTORS,
        "baselines": {
            "river": importlib.import_module("river").__version__,
            "input": "river: mean distance to the k neighbours, z-scored by drift_reference.json; alibi: PCA vectors",
            "calibration": f"most sensitive setting with at most {limit} counted false alarms (ours) on the controls",
            "settings": settings,
        },
        "scenarios": {s: {name: rows[s] for name, rows in summaries.items()} for s in SCENARIOS},
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
