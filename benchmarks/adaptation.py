"""Adaptation benchmark: kNN accuracy after classes the factory model never saw appear.

Each seed streams 500 in-distribution digit frames (classes 0-5) then 300 frames of digits 6-9
(`unseen@500`) through the real pipeline (TFLite, transform, kNN, default drift detectors), in
three modes on a fresh copy of the factory bundle:

  none       no adapter: post-shift accuracy is 0 by construction (the reference has no 6-9)
  heuristic  the adapter alone: quarantine, pseudo-labels "unknown-N", snapshot/rollback; a quarantined frame
             is predicted among the new classes' samples when one is near (`novel_vote`; off: the plain vote)
  validated  heuristic + an operator: the first LABELS flagged frames of each new class (quarantined,
             or predicted as a pseudo-label) get their true label, applied with `apply_label` as one
             batch per class once its LABELS-th flagged frame was seen

Measured on the 300 post-shift frames, as predicted at the time (prequential):
  accuracy         exact label match (a pseudo-label "unknown-N" never matches a digit)
  mapped_accuracy  each "unknown-N" counts as the majority true class of the samples that joined
                   under it (what an operator naming the cluster would give)
  novel_rate       share of post-shift frames predicted as some "unknown-N" (new class recognised)
  after_labels     validated mode: exact accuracy over the post-shift frames processed after the
                   last class's labels arrived, and how many frames that was
  ceiling          validated mode: what the device's own features allow on those same frames: the
                   same kNN (k, metric, vote) fitted offline, without a memory bound, on the factory
                   reference plus exactly the labelled vectors the operator gave; ceiling_ratio is
                   after_labels / ceiling
  retention        exact accuracy on 300 fresh in-distribution frames (classes 0-5, adapter off)
                   with the kNN as the stream left it: does adapting hurt the known classes?
  lost_*           post-shift frames missed under the mapping, by where: lost_ramp_up (predicted before the
                   first pseudo-label was committed), lost_known_class (after it, voted to a wrong digit),
                   lost_wrong_cluster (after it, voted to an "unknown-N" of another digit)
  first_pseudo_label  post-shift frames predicted before the first pseudo-label was committed (None: never)
  pseudo_purity    share of the samples that joined under an "unknown-N" whose digit is its majority digit
  mapped_by_span   mapped accuracy over each 50 post-shift frames, in order (how fast it ramps up)

A control stream per seed (`control`: PRE + POST frames of digits 0-5, no drift, the adapter on)
counts the frames the detectors called drifting, the pseudo-labels committed, and whether the
reference set changed at all (vectors, labels, origins or vote weights): all but the first must be 0.

A mixed stream per seed (`mixed`: PRE frames of digits 0-5, then POST frames in which the chance of a digit
6-9 ramps from 0 to 1, `gradual-unseen@PRE:POST`, heuristic mode) measures what the known classes pay while a
new one arrives beside them: known_accuracy (exact, on the post-shift frames of digits 0-5) and new_mapped
(mapped accuracy on those of digits 6-9).

The adapter's defaults were tuned on seeds 0-9 and 40-99; report on seeds 10-39:

    python -m benchmarks.adaptation --first-seed 10 --seeds 30
"""

from __future__ import annotations

import argparse
import json
import statistics
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

from device.adapt import NEW_CLASS_PREFIX, AdaptConfig, Adapter
from device.knn import KNNClassifier, Snapshot

BUNDLE = Path("device/models/digits")
PRE, POST, LABELS, RETENTION = 500, 300, 20, 300
MODES = ("none", "heuristic", "validated")
NEW_CLASSES = ("6", "7", "8", "9")


class Operator:
    """Labels the first LABELS flagged frames of each new class, one batch per class."""

    def __init__(self, adapter: Adapter) -> None:
        self.adapter = adapter
        self.flagged: dict[str, list[tuple[int, Any]]] = {c: [] for c in NEW_CLASSES}
        self.done: set[str] = set()
        self.last_batch: int | None = None  # seq at which the last class got its labels
        self.given: list[tuple[Any, str]] = []  # every (vector, label) sent, for the offline ceiling

    def see(self, seq: int, result: Any, truth: str) -> list[dict[str, Any]]:
        flagged = seq in self.adapter.quarantine or result.label.startswith(NEW_CLASS_PREFIX)
        if truth not in self.flagged or truth in self.done or not flagged:
            return []
        batch = self.flagged[truth]
        batch.append((seq, result.vector))
        if len(batch) < LABELS:
            return []
        self.done.add(truth)
        if self.done == set(NEW_CLASSES):
            self.last_batch = seq
        events = []
        for labelled_seq, vector in batch:  # the server sends the vector of the drift sample along
            self.given.append((vector, truth))
            events += self.adapter.apply_label(labelled_seq, truth, vector=vector)
        return events


def run(seed: int, mode: str, config: AdaptConfig) -> dict[str, Any]:
    """One stream in one mode; returns its post-shift metrics."""
    from device.capture import open_source
    from device.pipeline.pipeline import Pipeline

    pipeline = Pipeline.from_bundle(BUNDLE)
    factory = pipeline.classifier.snapshot()
    adapter = Adapter(pipeline.classifier, config) if mode != "none" else None
    pipeline.adapter = adapter
    operator = Operator(adapter) if adapter is not None and mode == "validated" else None
    truth: dict[int, str] = {}
    mapping: dict[str, str] = {}
    joined: list[tuple[str, str]] = []  # (unknown-N, true digit) of every sample a new-class pseudo-label added
    first: int | None = None  # seq at which the first pseudo-label was committed
    post: list[tuple[int, str, str]] = []
    vectors: dict[int, Any] = {}
    events: list[dict[str, Any]] = []
    source = open_source("digits", drift=f"unseen@{PRE}", seed=seed, limit=PRE + POST)
    for seq, frame in enumerate(source):
        result = pipeline.process(frame, seq)
        truth[seq] = str(frame.label)
        new_events = pipeline.events + (operator.see(seq, result, truth[seq]) if operator else [])
        for event in new_events:
            if event["action"] == "pseudo_label" and first is None:
                first = seq
            if event["action"] == "pseudo_label" and event["reason"] == "new_class":
                mapping[event["label"]] = Counter(truth[s] for s in event["seqs"]).most_common(1)[0][0]
                joined += [(event["label"], truth[s]) for s in event["seqs"]]
        events += new_events
        if seq >= PRE:
            post.append((seq, result.label, truth[seq]))
            vectors[seq] = result.vector.copy()
    source.close()
    metrics = score(post, mapping)
    if adapter is not None:
        metrics.update(losses(post, mapping, first))
        metrics["pseudo_purity"] = round(sum(mapping[n] == t for n, t in joined) / len(joined), 4) if joined else None
    metrics["retention"] = retention(pipeline, seed)
    metrics["events"] = dict(Counter(e["action"] for e in events))
    if operator is not None:
        after = [(s, p, t) for s, p, t in post if operator.last_batch is not None and s > operator.last_batch]
        metrics["after_labels"] = round(sum(p == t for _, p, t in after) / len(after), 4) if after else None
        metrics["frames_after_labels"] = len(after)
        reference = ceiling_classifier(pipeline.classifier, factory, operator.given)
        ceiling = [reference.predict(vectors[s])[0] == t for s, _, t in after]
        metrics["ceiling"] = round(sum(ceiling) / len(ceiling), 4) if ceiling else None
        if metrics["after_labels"] is not None and metrics["ceiling"]:
            metrics["ceiling_ratio"] = round(metrics["after_labels"] / metrics["ceiling"], 4)
    return metrics


def control(seed: int, config: AdaptConfig) -> dict[str, Any]:
    """A stream without drift through the adapter: what it commits, and whether the reference set moved."""
    from device.capture import open_source
    from device.pipeline.pipeline import Pipeline

    pipeline = Pipeline.from_bundle(BUNDLE)
    before = pipeline.classifier.snapshot()
    adapter = pipeline.adapter = Adapter(pipeline.classifier, config)
    drifting, events = 0, Counter[str]()
    source = open_source("digits", seed=seed + 20_000, limit=PRE + POST)
    for seq, frame in enumerate(source):
        pipeline.process(frame, seq)
        drifting += bool(pipeline.monitor is not None and pipeline.monitor.drifting)
        events.update(e["action"] for e in pipeline.events)
    source.close()
    after = pipeline.classifier.snapshot()
    same = all(
        np.array_equal(getattr(before, f), getattr(after, f)) for f in ("vectors", "labels", "origins", "weights")
    )
    return {
        "drifting_frames": drifting,
        "quarantined": adapter.stats()["quarantine"] + adapter.quarantine.dropped,
        "pseudo_labels": events["pseudo_label"],
        "reference_changed": int(not same),
    }


def mixed(seed: int, config: AdaptConfig) -> dict[str, Any]:
    """Heuristic mode on a stream where new digits arrive among the known ones: does either side pay?"""
    from device.capture import open_source
    from device.pipeline.pipeline import Pipeline

    pipeline = Pipeline.from_bundle(BUNDLE)
    pipeline.adapter = Adapter(pipeline.classifier, config)
    truth: dict[int, str] = {}
    mapping: dict[str, str] = {}
    post: list[tuple[str, str]] = []
    source = open_source("digits", drift=f"gradual-unseen@{PRE}:{POST}", seed=seed + 30_000, limit=PRE + POST)
    for seq, frame in enumerate(source):
        result = pipeline.process(frame, seq)
        truth[seq] = str(frame.label)
        for event in pipeline.events:
            if event["action"] == "pseudo_label" and event["reason"] == "new_class":
                mapping[event["label"]] = Counter(truth[s] for s in event["seqs"]).most_common(1)[0][0]
        if seq >= PRE:
            post.append((mapping.get(result.label, result.label), truth[seq]))
    source.close()
    known = [p == t for p, t in post if t not in NEW_CLASSES]
    new = [p == t for p, t in post if t in NEW_CLASSES]
    return {
        "known_accuracy": round(sum(known) / len(known), 4) if known else None,
        "new_mapped": round(sum(new) / len(new), 4) if new else None,
    }


def ceiling_classifier(device: KNNClassifier, factory: Snapshot, given: list[tuple[Any, str]]) -> KNNClassifier:
    """What the device's own features allow: the same kNN, offline and unbounded, on the factory reference
    plus exactly the labelled vectors the operator gave."""
    vectors = np.concatenate([factory.vectors, np.stack([v for v, _ in given])]) if given else factory.vectors
    labels = np.concatenate([factory.labels, np.asarray([label for _, label in given], dtype=str)])
    knn = KNNClassifier(k=device.k, metric=device.metric, max_samples=max(len(vectors), device.k))
    return knn.fit(vectors, labels)


def score(post: list[tuple[int, str, str]], mapping: dict[str, str]) -> dict[str, Any]:
    n = len(post)
    return {
        "accuracy": round(sum(p == t for _, p, t in post) / n, 4),
        "mapped_accuracy": round(sum(mapping.get(p, p) == t for _, p, t in post) / n, 4),
        "novel_rate": round(sum(p.startswith(NEW_CLASS_PREFIX) for _, p, _ in post) / n, 4),
    }


def losses(post: list[tuple[int, str, str]], mapping: dict[str, str], first: int | None) -> dict[str, Any]:
    """Where the post-shift frames missed under the mapping, and the mapped accuracy over each 50 of them."""
    lost = dict.fromkeys(("lost_ramp_up", "lost_known_class", "lost_wrong_cluster"), 0)
    for seq, predicted, true in post:
        if mapping.get(predicted, predicted) == true:
            continue
        if first is None or seq <= first:
            lost["lost_ramp_up"] += 1
        else:
            lost["lost_wrong_cluster" if predicted.startswith(NEW_CLASS_PREFIX) else "lost_known_class"] += 1
    hits = [mapping.get(p, p) == t for _, p, t in post]
    return {
        **lost,
        "first_pseudo_label": None if first is None else max(first - post[0][0] + 1, 0),
        "mapped_by_span": [round(sum(hits[i : i + 50]) / len(hits[i : i + 50]), 4) for i in range(0, len(hits), 50)],
    }


def retention(pipeline: Any, seed: int) -> float:
    """Exact accuracy on fresh in-distribution frames with the adapted kNN frozen."""
    from device.capture import open_source

    pipeline.adapter = None
    source = open_source("digits", seed=seed + 10_000, limit=RETENTION)
    hits = [pipeline.process(f, PRE + POST + i).label == f.label for i, f in enumerate(source)]
    source.close()
    return round(sum(hits) / len(hits), 4)


def summarise(per_seed: list[dict[str, Any]]) -> dict[str, Any]:
    """Mean and standard deviation across seeds of every numeric metric."""
    out: dict[str, Any] = {}
    for key in per_seed[0]:
        values = [m[key] for m in per_seed if isinstance(m.get(key), int | float)]
        if values:
            std = statistics.stdev(values) if len(values) > 1 else 0.0
            out[key] = {"mean": round(statistics.fmean(values), 4), "std": round(std, 4)}
    return out


def evaluate(seeds: list[int], config: AdaptConfig | None = None) -> dict[str, Any]:
    """The benchmark over `seeds`: per mode, per-seed metrics and their mean and std."""
    config = config or AdaptConfig()
    report: dict[str, Any] = {
        "protocol": {
            "pre": PRE,
            "post": POST,
            "drift": f"unseen@{PRE}",
            "labels_per_class": LABELS,
            "seeds": seeds,
            "bundle": str(BUNDLE),
            "config": config.to_dict(),
        },
    }
    for mode in MODES:
        per_seed = [run(seed, mode, config) for seed in seeds]
        report[mode] = {"summary": summarise(per_seed), "per_seed": per_seed}
    per_seed = [mixed(seed, config) for seed in seeds]
    report["mixed"] = {"summary": summarise(per_seed), "per_seed": per_seed}
    runs = [control(seed, config) for seed in seeds]
    report["control"] = {"total": {key: sum(r[key] for r in runs) for key in runs[0]}, "per_seed": runs}
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, default=10, help="number of seeds")
    parser.add_argument("--first-seed", type=int, default=10, help="first seed (0-9 were used for tuning)")
    parser.add_argument("--config", type=json.loads, default={}, help="AdaptConfig overrides as JSON")
    args = parser.parse_args()
    print(
        json.dumps(
            evaluate(list(range(args.first_seed, args.first_seed + args.seeds)), AdaptConfig(**args.config)), indent=2
        )
    )


if __name__ == "__main__":
    main()
