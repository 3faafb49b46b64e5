"""Drift alarms long after a device adapted to classes its model never saw, with and without learning them.

`python -m benchmarks.learned_classes --json` streams 4000 frames of digits per seed, digits 6-9 (unseen by
the factory model) mixed in from frame 500, through the real pipeline with the adapter (pseudo-labels), once
as shipped and once with the prediction-histogram detector never told about learned classes. It prints,
per seed and in total, the alarms of every detector after frame 2500: by then the adapter has committed its
`unknown-N` classes, so what the histogram detector still raises is about classes the device already knows.
"""

from __future__ import annotations

import argparse
import json
from collections import Counter
from pathlib import Path
from typing import Any

from device.capture import open_source
from device.monitor.monitor import Monitor
from device.pipeline.pipeline import Pipeline

BUNDLE = Path(__file__).resolve().parents[1] / "device" / "models" / "digits"
FRAMES, SHIFT, LATE = 4000, 500, 2500


def late_alarms(seed: int, learn: bool) -> dict[str, Any]:
    pipeline = Pipeline.from_bundle(BUNDLE)
    if not learn:
        assert isinstance(pipeline.monitor, Monitor)
        pipeline.monitor.learn_classes = lambda classes: None  # type: ignore[method-assign]
    late: Counter[str] = Counter()
    source = open_source("digits", drift=f"unseen@{SHIFT}", seed=seed, limit=FRAMES)
    for seq, frame in enumerate(source):
        result = pipeline.process(frame, seq)
        if seq >= LATE:
            late.update(result.drift)
    source.close()
    learned = [c for c in pipeline.classifier.classes if c not in pipeline.bundle.labels]
    return {"learned": learned, "alarms": dict(sorted(late.items()))}


def run(seeds: list[int]) -> dict[str, Any]:
    report: dict[str, Any] = {"frames": FRAMES, "shift_at": SHIFT, "alarms_counted_from": LATE, "per_seed": {}}
    totals: dict[str, Counter[str]] = {"learning": Counter(), "not_learning": Counter()}
    for seed in seeds:
        row = {"learning": late_alarms(seed, True), "not_learning": late_alarms(seed, False)}
        for mode, result in row.items():
            totals[mode].update(result["alarms"])
        report["per_seed"][seed] = row
    report["total"] = {mode: dict(sorted(counts.items())) for mode, counts in totals.items()}
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--first-seed", type=int, default=0)
    parser.add_argument("--json", action="store_true", help="compact JSON (indented otherwise)")
    args = parser.parse_args()
    report = run(list(range(args.first_seed, args.first_seed + args.seeds)))
    print(json.dumps(report, indent=None if args.json else 2))


if __name__ == "__main__":
    main()
