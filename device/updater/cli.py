"""`tinylcm updater`: run the updater beside the inference service (or one step, or print its state).

Its settings are the config file's `updater` section; each flag given overrides one of them.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
import threading
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from device.commandline import ENVIRONMENT, VersionAction, add_log_format, configure_logging, fail
from device.updater.record import report
from device.updater.settings import ProbationGates, UpdaterSettings
from device.updater.watchdog import ProcessRestarter, RestarterChoice, Watchdog, select_restarter

if TYPE_CHECKING:
    from device.config import Config, UpdaterConfig

log = logging.getLogger("tinylcm.updater")
STOP_SIGNALS = {signal.SIGTERM, signal.SIGINT}

# flag (its argparse dest) -> the field of the config's `updater` section it overrides
FLAGS = {"server": "server_url", "health_url": "health_url", "device_type": "device_type",
         "probation_s": "probation_s", "stale_s": "stale_s", "service": "service", "docker_socket": "docker_socket",
         "compose_project": "compose_project", "inference_cmd": "inference_cmd"}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", type=Path, help="the appliance's JSON config (data dir, health port, updater)")
    parser.add_argument("--data-dir", type=Path, help="state volume (default: the config's, else /data)")
    parser.add_argument("--server", help="server URL (default: updater.server_url, sync.server_url, "
                        "else from state/provisioning.json)")
    parser.add_argument("--health-url", help="inference health endpoint (default: from the config's port)")
    parser.add_argument("--device-type", help="balena device type (default: BALENA_DEVICE_TYPE or the board)")
    parser.add_argument("--probation-s", type=float, help="probation window (default: updater.probation_s, 300)")
    parser.add_argument("--inference-cmd", help="run the inference service as a child and restart it when hung")
    parser.add_argument("--service", help="service the watchdog restarts (balena service, or compose service "
                        "label on Docker; default: updater.service, inference)")
    parser.add_argument("--docker-socket", type=Path, default=None,
                        help="Docker socket for the watchdog on plain Docker hosts (default /var/run/docker.sock)")
    parser.add_argument("--compose-project", help="compose project of the inference container (Docker hosts)")
    parser.add_argument("--stale-s", type=float,
                        help="watchdog: restart after this long unhealthy (default: updater.stale_s, 60)")
    parser.add_argument("--reexec-after-download", action="store_true",
                        help="once a download round that loaded the TUF client is over, re-execute this command "
                        "(same process id) to give the client's memory back; the journal resumes the update. "
                        "Ignored with a child-process watchdog (--inference-cmd), whose child would be orphaned")
    parser.add_argument("--once", action="store_true", help="recover, do one step, print the state and exit")
    parser.add_argument("--status", action="store_true", help="print the persisted state and exit")


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register `updater` on `tinylcm`'s subcommands."""
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "updater", help="TUF-verified model updates with A/B slots, probation and rollback")
    parser.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                        help="show the traceback of an error")
    add_arguments(parser)
    parser.set_defaults(func=cmd_updater)
    return parser


def config_from(args: argparse.Namespace) -> Config:
    """The config file (defaults without --config), its `updater` section overridden by the flags given."""
    from device.config import Config, load_config

    config = load_config(args.config) if args.config else Config()
    given = {field: getattr(args, flag) for flag, field in FLAGS.items() if getattr(args, flag) is not None}
    if "docker_socket" in given:
        given["docker_socket"] = str(given["docker_socket"])
    return replace(config, updater=replace(config.updater, **given))


def settings_from(
    args: argparse.Namespace, environ: Mapping[str, str], config: Config | None = None
) -> UpdaterSettings:
    """The updater's settings from `config` (default: `config_from(args)`), the data dir flag and the environment."""
    from device.bundle import factory_bundle

    config = config or config_from(args)
    updater = config.updater
    data_dir = args.data_dir or Path(config.device.data_dir)
    health = updater.health_url or f"http://127.0.0.1:{config.device.health_port}/healthz"
    return UpdaterSettings(data_dir=data_dir, server_url=updater.server_url or config.sync.server_url or None,
                           health_url=health,
                           device_type=updater.device_type or environ.get("BALENA_DEVICE_TYPE") or None,
                           factory_bundle=factory_bundle(), poll_interval_s=updater.poll_interval_s,
                           gates=ProbationGates(window_s=updater.probation_s))


def restarter_from(updater: UpdaterConfig, environ: Mapping[str, str]) -> RestarterChoice:
    """The balena supervisor, then the Docker socket, then a child process with --inference-cmd (started here)."""
    choice = select_restarter(environ, updater.service, Path(updater.docker_socket) if updater.docker_socket else None,
                              updater.compose_project or None, updater.inference_cmd or None)
    if isinstance(choice.restarter, ProcessRestarter):
        choice.restarter.start()
    if choice.restarter is None:
        log.warning("NO WATCHDOG: %s", choice.detail)
    else:
        log.info("watchdog: %s", choice.detail)
    return choice


def cmd_updater(args: argparse.Namespace) -> int:
    config = config_from(args)
    settings = settings_from(args, os.environ, config)
    if args.status:
        from device.updater.record import update_report

        sys.stdout.write(json.dumps(update_report(settings.data_dir), indent=2) + "\n")
        return 0
    from device.updater.machine import Updater  # the TUF client: loaded by the updater only, never by `tinylcm run`

    choice = restarter_from(config.updater, os.environ)
    restarter = choice.restarter
    watchdog = Watchdog(restarter, stale_after_s=config.updater.stale_s) if restarter else None
    updater = Updater(settings, watchdog=watchdog, watchdog_kind=choice.kind)
    if args.once:
        updater.recover()
        updater.step()
        sys.stdout.write(json.dumps(report(updater.record), indent=2) + "\n")
        return 0
    stop = threading.Event()
    for sig in STOP_SIGNALS:
        signal.signal(sig, lambda *_: stop.set())
    signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)  # blocked across a re-exec (reexec_self): now ours
    reexec = args.reexec_after_download
    if reexec and isinstance(restarter, ProcessRestarter):
        log.warning("--reexec-after-download ignored: the inference service is this process's child")
        reexec = False
    def on_round_over() -> None:
        nonlocal reexec
        if reexec and not reexec_self(stop):
            reexec = False  # the exec failed (said so): this process keeps the TUF client, and runs on

    try:
        updater.run(stop, on_round_over if reexec else None)
    finally:
        if isinstance(restarter, ProcessRestarter):
            restarter.stop()
    return 0


def reexec_self(stop: threading.Event) -> bool:
    """Replace this process by a fresh run of its own command line (same pid, same open stdio): the memory of
    what a download round imported (python-tuf, securesystemslib, cryptography) goes back to the system. The new
    process recovers from the journal, as after any restart. SIGTERM/SIGINT are blocked from the last look at
    `stop` on: one that comes later stays pending across the exec and reaches the new process once it has
    installed its handlers; none is lost, and a stop asked before is honoured here (no exec, True).

    Returns False if the exec failed (the interpreter replaced by a package upgrade, no memory for the new
    image, a closed stdout): logged, the signals unblocked, and this process goes on as it was."""
    signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
    if stop.is_set():
        signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)
        return True
    log.info("updater: download round over; re-executing to give the TUF client's memory back")
    try:
        for handler in logging.getLogger().handlers:
            handler.flush()
        sys.stdout.flush()
        sys.stderr.flush()
        os.execv(sys.executable, sys.orig_argv)  # noqa: S606 - our own command line, no shell
    except OSError as exc:
        signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)
        log.error("updater: could not re-execute (%s); going on with the TUF client loaded", exc)
        return False
    raise AssertionError("unreachable: os.execv returns only by raising")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="tinylcm updater", description=__doc__, epilog=ENVIRONMENT,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action=VersionAction)
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    add_log_format(parser)
    parser.add_argument("--debug", action="store_true", help="show the traceback of an error")
    add_arguments(parser)
    args = parser.parse_args(argv)
    configure_logging(logging.DEBUG if args.verbose else logging.INFO, args.log_format)
    try:
        return cmd_updater(args)
    except Exception as exc:
        status = fail("tinylcm updater", exc, args.debug)
        if status is None:
            raise
        return status
