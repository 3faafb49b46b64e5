"""`tinylcm`: replay a stream through the pipeline, or run the appliance's service loop."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from device.appliance import Appliance, factory_bundle
from device.capture import open_source
from device.config import Config, load_config
from device.errors import TinyLCMError
from device.outbox import Outbox
from device.pipeline.pipeline import Pipeline
from device.pipeline.result import Result
from device.service import Runner
from device.updater.cli import add_parser as add_updater_parser

log = logging.getLogger("tinylcm")


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
                print(_sample_json(result), flush=False)
            else:
                _progress(runner, result, args.limit)
    finally:
        source.close()
        if outbox:
            outbox.close()
    if not args.jsonl:
        sys.stderr.write("\n")
    print(json.dumps({"summary": runner.stats.summary()}), flush=True)
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    logging.getLogger().setLevel(config.device.log_level)
    appliance = Appliance(config)
    appliance.runner.stop_on_signals()
    return appliance.run()


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="tinylcm", description=__doc__)
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True)
    replay = sub.add_parser("replay", help="run a stream through the pipeline and report what it sees")
    replay.add_argument("--bundle", type=Path, default=factory_bundle(), help="model bundle directory")
    replay.add_argument("--source", default="digits", help="camera | dir:PATH | digits")
    replay.add_argument("--drift", help="inject a drift, e.g. unseen@300, noise@200, gradual-unseen@300:200")
    replay.add_argument("--limit", type=int, help="stop after N frames")
    replay.add_argument("--seed", type=int, default=0, help="seed of synthetic sources and drift")
    replay.add_argument("--config", type=Path, help="JSON configuration (detectors, classifier, ...)")
    replay.add_argument("--outbox", type=Path, help="also record into this outbox database")
    replay.add_argument("--jsonl", action="store_true", help="one JSON object per sample on stdout")
    replay.set_defaults(func=cmd_replay)
    run = sub.add_parser("run", help="run the appliance: capture -> pipeline -> outbox, until SIGTERM")
    run.add_argument("--config", type=Path, required=True, help="JSON configuration file")
    run.set_defaults(func=cmd_run)
    add_updater_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    quiet = args.command == "replay" and not args.verbose  # the progress display says it all
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.WARNING if quiet else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr,
    )
    try:
        return int(args.func(args))
    except TinyLCMError as exc:
        log.error("%s", exc)
        return 2


if __name__ == "__main__":
    sys.exit(main())
