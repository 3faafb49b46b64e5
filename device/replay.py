"""`tinylcm replay`: a stream through the pipeline, with a progress display or one JSON line per sample."""

from __future__ import annotations

import argparse
import json
import sys

from device.capture import open_source
from device.config import Config, load_config
from device.outbox import Outbox
from device.pipeline.pipeline import Pipeline
from device.result import Result
from device.runner import Runner


def _sample_json(result: Result) -> str:
    return json.dumps(
        {
            "seq": result.seq,
            "label": result.label,
            "confidence": round(result.confidence, 4),
            "model_confidence": round(result.model_confidence, 4),
            "true_label": result.true_label,
            "latency_ms": round(result.latency_ms, 3),
            "drift": result.drift,
        }
    )


def _progress(runner: Runner, result: Result, total: int | None) -> None:
    """One updating line on a terminal (a line per 100 frames otherwise), plus a line per event."""
    s = runner.stats
    acc = f"  accuracy {s.correct / s.labelled:.3f}" if s.labelled else ""
    line = f"  frame {s.frames}{f'/{total}' if total else ''}{acc}  drift events {s.drift_events}"
    line += f"  adaptations {s.adaptations}  skipped {s.skipped}"
    tty = sys.stderr.isatty()
    if tty:
        sys.stderr.write("\r" + line + "   ")
    elif s.frames % 100 == 0:
        sys.stderr.write(line + "\n")
    events = [f"! drift at frame {result.seq}: {', '.join(result.drift)}"] if result.drift else []
    events += [f"~ adaptation at frame {result.seq}: {e.get('action')} {e.get('label')} ({e.get('reason')})"
               for e in runner.pipeline.events]
    for event in events:
        sys.stderr.write(f"\r{event:<{len(line) + 3}}\n" if tty else event + "\n")


def cmd_replay(args: argparse.Namespace) -> int:
    config = load_config(args.config) if args.config else Config()
    pipeline = Pipeline.from_bundle(args.bundle, config)
    source = open_source(
        args.source, drift=args.drift, seed=args.seed, limit=args.limit, size=pipeline.bundle.frame_size
    )
    outbox = Outbox(args.outbox) if args.outbox else None
    runner = Runner(pipeline, outbox, config.outbox)
    runner.stop_on_signals()
    try:
        for result in runner.run(source):
            if args.jsonl:
                sys.stdout.write(_sample_json(result) + "\n")
            else:
                _progress(runner, result, args.limit)
    finally:
        source.close()
        if outbox:
            outbox.close()
    if not args.jsonl:
        sys.stderr.write("\n")
    sys.stdout.write(json.dumps({"summary": runner.stats.summary()}) + "\n")
    sys.stdout.flush()
    return 0
