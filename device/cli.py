"""`tinylcm`: replay a stream through the pipeline, run the appliance's service loop, or register a bundle in MLflow."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

from device.commandline import ENVIRONMENT, VersionAction, add_log_format, configure_logging, fail
from device.config import load_config
from device.updater.cli import add_parser as add_updater_parser

log = logging.getLogger("tinylcm")
def cmd_replay(args: argparse.Namespace) -> int:
    from device.bundle import factory_bundle
    from device.replay import cmd_replay as replay  # the commands import what they need: the updater stays small

    if args.bundle is None:
        args.bundle = factory_bundle()
    return replay(args)


def cmd_run(args: argparse.Namespace) -> int:
    from device.appliance import Appliance

    config = load_config(args.config)
    logging.getLogger().setLevel(config.device.log_level)
    appliance = Appliance(config, environment=os.environ)
    appliance.runner.stop_on_signals()
    return appliance.run()


def cmd_bundle_register(args: argparse.Namespace) -> int:
    from device.mlflow_model import register_bundle

    registered = register_bundle(args.bundle, args.tracking_uri, args.name, alias=args.alias,
                                 experiment=args.experiment)
    alias = f", alias {args.alias}" if args.alias else ""
    log.info("registered %s as models:/%s version %s%s (run %s)", args.bundle, registered.name, registered.version,
             alias, registered.run_id)
    print(registered.version)  # stdout: the version alone, for scripts
    return 0


REGISTER_HELP = """Log a bundle directory as an MLflow model (pyfunc flavour) and register it.

The model runs this package's own pipeline (TFLite -> standardize+PCA -> kNN), carried with it as code, so
mlflow.pyfunc.load_model("models:/NAME@ALIAS").predict(frames) answers what a device would. Registration lives
here, on the device side, rather than in `tinysphere`, because it needs that code and the server never imports
it; `tinysphere bundle publish --from-mlflow models:/NAME@ALIAS` then publishes the registered version.
The run gets bundle.json's metrics; the version is tagged with the bundle's name, version and bundle.json's
SHA-256. Needs mlflow installed (not in the device image).
"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="tinylcm", description=__doc__, epilog=ENVIRONMENT,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action=VersionAction)
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    add_log_format(parser)
    parser.add_argument("--debug", action="store_true", help="show the traceback of an error")
    sub = parser.add_subparsers(dest="command", required=True)
    replay = sub.add_parser("replay", help="run a stream through the pipeline and report what it sees")
    replay.add_argument("--bundle", type=Path, help="model bundle directory (default: the factory bundle)")
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
    bundle = sub.add_parser("bundle", help="model bundles in the MLflow model registry")
    bundle_sub = bundle.add_subparsers(dest="bundle_command", required=True)
    register = bundle_sub.add_parser("register", help="log a bundle as an MLflow pyfunc model and register it",
                                     description=REGISTER_HELP, formatter_class=argparse.RawDescriptionHelpFormatter)
    register.add_argument("bundle", type=Path, help="bundle directory")
    register.add_argument("--tracking-uri", required=True, help="MLflow tracking (and registry) URI")
    register.add_argument("--name", required=True, help="registered model name, e.g. digits")
    register.add_argument("--alias", help="alias to point at the new version, e.g. champion")
    register.add_argument("--experiment", help="experiment of the run (default: the model name)")
    register.set_defaults(func=cmd_bundle_register)
    add_updater_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    quiet = args.command == "replay" and not args.verbose  # the progress display says it all
    configure_logging(logging.DEBUG if args.verbose else logging.WARNING if quiet else logging.INFO, args.log_format)
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
