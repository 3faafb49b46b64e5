"""`tinylcm`: replay a stream through the pipeline, or run the appliance's service loop."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from device.bundle import factory_bundle
from device.commandline import ENVIRONMENT, fail, package_version
from device.config import load_config
from device.updater.cli import add_parser as add_updater_parser

log = logging.getLogger("tinylcm")
def cmd_replay(args: argparse.Namespace) -> int:
    from device.replay import cmd_replay as replay  # the commands import what they need: the updater stays small

    return replay(args)


def cmd_run(args: argparse.Namespace) -> int:
    from device.appliance import Appliance

    config = load_config(args.config)
    logging.getLogger().setLevel(config.device.log_level)
    appliance = Appliance(config)
    appliance.runner.stop_on_signals()
    return appliance.run()


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="tinylcm", description=__doc__, epilog=ENVIRONMENT,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"%(prog)s {package_version()}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    parser.add_argument("--debug", action="store_true", help="show the traceback of an error")
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
    except KeyboardInterrupt:
        sys.stderr.write("tinylcm: interrupted\n")
        return 130
    except Exception as exc:
        status = fail("tinylcm", exc, args.debug)
        if status is None:
            raise
        return status


if __name__ == "__main__":
    sys.exit(main())
