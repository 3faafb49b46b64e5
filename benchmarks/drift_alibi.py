"""alibi-detect's online drift detectors (CVM, LSDD, MMD) as baselines of `benchmarks.drift`.

alibi-detect pins numpy < 2, so it lives in its own environment (`.venvs/bench`, see the README);
`benchmarks.drift` writes the streams to an .npz, runs this module there and reads JSON back:

    .venvs/bench/bin/python -m benchmarks.drift_alibi STREAMS.npz --max-false-alarms 1 --detectors cvm

Each detector sees the 16-d PCA vectors, takes its reference from the tuning seeds' control streams
and is reset after every alarm. Its expected run time (ERT) is calibrated on the control streams:
the lowest ERT whose counted false alarms do not exceed `--max-false-alarms` (nominal ERT does not
hold on these streams). This module imports nothing of alibi-detect until a detector is built.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.drift_calibration import calibrate, counted

SEED = 0  # numpy and torch seed of every threshold configuration
CVM_WINDOWS = [10, 20, 40]
CVM_BOOTSTRAPS = 1_000_000  # null streams simulated once and cached: enough for an ERT of ~56,000
WINDOW = 20  # LSDD and MMD test window
KERNEL_MAX_ERT = 20_000.0  # LSDD and MMD bootstrap at least ERT streams for every configuration: this bounds it
MIN_ERT = 100.0  # the sensitive end of the calibration

Detector = Any  # an alibi-detect online detector
Factory = Callable[[float], Detector]  # ert -> a configured detector


def run(detector: Detector, stream: np.ndarray, stop_after: int | None = None) -> list[int]:
    """Counted alarm indices of `detector` over `stream`, reset before it and after each alarm."""
    detector.reset_state()
    alarms: list[int] = []
    for i, x in enumerate(stream):
        if detector.predict(x, return_test_stat=False)["data"]["is_drift"]:
            alarms = counted([*alarms, i])
            detector.reset_state()
            if stop_after is not None and len(alarms) > stop_after:
                break
    return alarms


def false_alarms(detector: Detector, controls: list[np.ndarray], limit: int) -> int:
    """Counted alarms over the control streams, stopping once there are more than `limit`."""
    total = 0
    for stream in controls:
        total += len(run(detector, stream, stop_after=limit - total))
        if total > limit:
            break
    return total


def cvm(reference: np.ndarray, cache: Path | None) -> tuple[Factory, float, dict[str, Any]]:
    """alibi's CVMDriftOnline; its null streams are simulated once (they do not depend on the ERT) and cached."""
    from alibi_detect.cd import CVMDriftOnline

    class CachedCVM(CVMDriftOnline):
        def _simulate_streams(self, t_max: int) -> np.ndarray:
            name = f"cvm-null-n{self.n}-w{'-'.join(map(str, self.window_sizes))}-b{self.n_bootstraps}-s{SEED}.npy"
            path = None if cache is None else cache / name
            if path is not None and path.exists():
                best = np.load(path)
            else:
                with warnings.catch_warnings():
                    warnings.filterwarnings("ignore", message="All-NaN slice encountered")
                    best = np.nanmax(super()._simulate_streams(t_max), -1).astype(np.float32)
                if path is not None:
                    np.save(path, best)
            return best[..., None].astype(np.float64)  # the max over windows is all alibi reads

    def make(ert: float) -> Detector:
        np.random.seed(SEED)
        return CachedCVM(reference, ert=ert, window_sizes=CVM_WINDOWS, n_bootstraps=CVM_BOOTSTRAPS, verbose=False)

    d = reference.shape[1]
    # alibi needs the (1 - beta) quantile of the bootstraps with beta = 1 - (1 - 1/ert)^(1/d)
    max_ert = 1.0 / (1.0 - (1.0 - 1.0 / (0.9 * CVM_BOOTSTRAPS)) ** d)
    return make, max_ert, {"window_sizes": CVM_WINDOWS, "n_bootstraps": CVM_BOOTSTRAPS}


def kernel_test(name: str, reference: np.ndarray) -> tuple[Factory, float, dict[str, Any]]:
    """alibi's LSDDDriftOnline or MMDDriftOnline (torch backend, one thread), bootstraps scaled with the ERT."""
    import torch
    from alibi_detect.cd import LSDDDriftOnline, MMDDriftOnline

    torch.set_num_threads(1)
    cls = LSDDDriftOnline if name == "lsdd" else MMDDriftOnline

    def make(ert: float) -> Detector:
        np.random.seed(SEED)
        torch.manual_seed(SEED)
        bootstraps = max(1000, int(1.25 * ert))
        return cls(reference, ert=ert, window_size=WINDOW, backend="pytorch", n_bootstraps=bootstraps, verbose=False)

    return make, KERNEL_MAX_ERT, {"window_size": WINDOW, "n_bootstraps": "max(1000, 1.25 x ERT)"}


def evaluate(
    name: str, reference: np.ndarray, streams: dict[str, dict[int, np.ndarray]], limit: int, cache: Path | None
) -> dict[str, Any]:
    """Calibrate one detector on the control streams, then its alarms on every stream and its cost."""
    make, max_ert, config = cvm(reference, cache) if name == "cvm" else kernel_test(name, reference)
    controls = list(streams["control"].values())
    ert, trials = calibrate(lambda ert: false_alarms(make(ert), controls, limit), MIN_ERT, max_ert, limit)
    detector = make(ert)
    alarms: dict[str, dict[int, list[int]]] = {}
    started, frames = time.process_time(), 0  # CPU time: the machine is shared
    for scenario, by_seed in streams.items():
        alarms[scenario] = {}
        for seed, stream in by_seed.items():
            alarms[scenario][seed] = run(detector, stream)
            frames += len(stream)
    us = (time.process_time() - started) * 1e6 / frames
    return {
        "ert": round(ert, 1),
        "config": {**config, "reference": len(reference), "calibration": trials},
        "alarms": alarms,
        "us_per_update": round(us, 1),
    }


def load(path: Path) -> tuple[np.ndarray, dict[str, dict[int, np.ndarray]]]:
    """The reference (n, d) and {scenario: {seed: (frames, d)}} from keys "reference" and "scenario/seed"."""
    streams: dict[str, dict[int, np.ndarray]] = {}
    with np.load(path, allow_pickle=False) as npz:
        reference = npz["reference"].astype(np.float32)
        for key in npz.files:
            if key != "reference":
                scenario, seed = key.split("/")
                streams.setdefault(scenario, {})[int(seed)] = npz[key].astype(np.float32)
    return reference, streams


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("streams", type=Path, help=".npz with 'reference' and 'scenario/seed' arrays")
    parser.add_argument("--max-false-alarms", type=int, required=True, help="counted alarms allowed on the controls")
    parser.add_argument("--detectors", default="cvm,lsdd,mmd", help="comma-separated: cvm, lsdd, mmd")
    parser.add_argument("--cache", type=Path, help="a directory for CVM's simulated null streams")
    args = parser.parse_args(argv)
    try:
        import alibi_detect
    except ModuleNotFoundError:
        print(json.dumps({"error": f"alibi-detect is not installed for {sys.executable}"}))
        return 0
    reference, streams = load(args.streams)
    report: dict[str, Any] = {"version": alibi_detect.__version__, "detectors": {}}
    for name in args.detectors.split(","):
        report["detectors"][name] = evaluate(name, reference, streams, args.max_false_alarms, args.cache)
        print(f"alibi {name}: done", file=sys.stderr, flush=True)
    print(json.dumps(report))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
