"""`tinysphere`: serve the API, run the worker, migrate, manage tokens, keys and bundles, read the fleet."""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
import traceback
from collections.abc import Callable
from datetime import timedelta
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import TYPE_CHECKING

import urllib3
from pydantic import ValidationError

from server import fleet_console
from server.api.request_id import RequestIdFilter
from server.config import Settings
from server.db.models import Role
from server.errors import InputError, RemoteError, TinySphereError
from server.registry import console as registry_console

if TYPE_CHECKING:
    from sqlalchemy.orm import Session


DISTRIBUTION = "tinymlops"
ENVIRONMENT = """environment:
  TINYSPHERE_URL           API base URL of the commands that talk to a server (--server)
  TINYSPHERE_TOKEN         API token of those commands (--token)
  TINYSPHERE_DATA_DIR      embedded data directory (--data-dir; default ./tinysphere-data)
  TINYSPHERE_DATABASE_URL  an external PostgreSQL instead of the embedded one (and the other
                           TINYSPHERE_* settings, see the README)
  TINYSPHERE_LOG_FORMAT    text (default) or json: one JSON object per log line (--log-format)
  MLFLOW_TRACKING_URI      MLflow of `bundle publish --from-mlflow` (--mlflow-uri)

"""
LOG_FORMAT_ENV = "TINYSPHERE_LOG_FORMAT"


def _log_formatter(log_format: str) -> logging.Formatter:
    """Text lines, or for "json" one JSON object a line with `time`, `level`, `name` and `message`."""
    if log_format == "json":
        from pythonjsonlogger.json import JsonFormatter

        return JsonFormatter("%(asctime)s %(levelname)s %(name)s %(message)s",
                             rename_fields={"levelname": "level", "asctime": "time"})
    return logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s")


def _configure_logging(level: int | str, log_format: str) -> None:
    """The root logger at `level`, writing to stderr in `log_format` (text or json)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_log_formatter(log_format))
    handler.addFilter(RequestIdFilter())  # a record logged while a request is answered carries its id
    logging.basicConfig(level=level, handlers=[handler])


def _settings(args: argparse.Namespace) -> Settings:
    overrides = {"data_dir": Path(args.data_dir)} if getattr(args, "data_dir", None) else {}
    return Settings(**overrides)  # type: ignore[arg-type]


def _local_settings(args: argparse.Namespace) -> Settings:
    """The settings of a command on the server's own database; refuses to start a new embedded one unasked."""
    settings = _settings(args)
    postgres = Path(settings.data_dir) / "postgres"
    if settings.embedded and not getattr(args, "init", False) and not postgres.exists():
        raise InputError(f"no data directory at {Path(settings.data_dir).resolve()}: give the running server's "
                         "--data-dir (or TINYSPHERE_DATA_DIR, or TINYSPHERE_DATABASE_URL), or --init to create it")
    return settings


def _serve(args: argparse.Namespace) -> int:
    import uvicorn
    from uvicorn.config import LOGGING_CONFIG

    from server.app import create_app
    from server.startup import development_keys, first_admin_token, prepare
    from server.worker.runner import Worker

    settings = _settings(args)
    run_worker = args.worker if args.worker is not None else settings.database_url is None
    backends = prepare(settings, with_mlflow=run_worker)
    development_keys(settings, backends)
    token = first_admin_token(backends)
    if token:
        print(f"Admin API token (shown once, keep it): {token}", flush=True)
    if backends.mlflow is not None:
        from server.tracking.ui import display_uri

        print(f"MLflow tracking URI: {display_uri(backends.mlflow.tracking_uri)} (its UI: tinysphere mlflow-ui)",
              flush=True)
    # uvicorn re-raises SIGTERM after its graceful shutdown; exiting normally instead lets this process
    # leave the embedded PostgreSQL at exit (the last user out stops it; a killed one is reaped).
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    stop = threading.Event()
    if run_worker:
        threading.Thread(target=Worker(backends).run_forever, args=(stop,), name="worker", daemon=True).start()
    try:
        # as JSON, uvicorn's error and access logs go to the root logger's handler (no handlers of their own)
        log_config = None if args.log_format == "json" else LOGGING_CONFIG
        uvicorn.run(create_app(backends), host=args.host, port=args.port, log_level=args.log_level.lower(),
                    access_log=args.access_log, log_config=log_config)
    finally:
        stop.set()
        backends.close()
    return 0


def _worker(args: argparse.Namespace) -> int:
    from server.startup import prepare
    from server.worker.runner import Worker

    backends = prepare(_local_settings(args), with_mlflow=True)
    backends.store.ensure_buckets()
    worker = Worker(backends)
    try:
        if args.once:
            print(f"processed {worker.drain()} job(s)")
        else:
            health = Path(args.health_file) if args.health_file else None
            worker.run_forever(threading.Event(), health.touch if health else None)
    finally:
        backends.close()
    return 0


def _migrate(args: argparse.Namespace) -> int:
    from server.startup import migrate, resolve

    settings = _local_settings(args)
    migrate(resolve(settings).database_url, settings)
    print("database is up to date")
    return 0


def _mlflow_ui(args: argparse.Namespace) -> int:
    from server.startup import resolve
    from server.tracking import ui

    endpoints = resolve(_local_settings(args))
    if endpoints.mlflow_tracking_uri is None:
        raise InputError("this server records nothing in MLflow (TINYSPHERE_MLFLOW_TRACKING_URI is not set)")
    print(f"MLflow tracking URI: {ui.display_uri(endpoints.mlflow_tracking_uri)}", flush=True)
    return ui.run(endpoints.mlflow_tracking_uri, endpoints.mlflow_artifact_root, args.port)


def _mlflow_migrate(args: argparse.Namespace) -> int:
    from server.startup import prepare
    from server.tracking.migrate import migrate

    backends = prepare(_local_settings(args), with_mlflow=True)
    try:
        if backends.mlflow is None:
            raise InputError("this server records nothing in MLflow (TINYSPHERE_MLFLOW_TRACKING_URI is not set)")
        done = migrate(backends.mlflow, backends.sessions)
    finally:
        backends.close()
    print(f"folded {done.runs} package runs ({done.points} points) into per-version runs; "
          f"deleted {done.experiments} experiments")
    return 0


def _in_session(args: argparse.Namespace, change: Callable[[Session], object]) -> object:
    """Run one change in a committed transaction against the configured (or embedded) database."""
    from server.startup import prepare

    backends = prepare(_local_settings(args), with_mlflow=False)
    try:
        with backends.sessions() as session:
            result = change(session)
            session.commit()
    finally:
        backends.close()
    return result


def _tokens_create(args: argparse.Namespace) -> int:
    from server.identity import create_api_token

    print(_in_session(args, lambda s: create_api_token(s, args.name or f"{args.role} token", Role(args.role))))
    return 0


def _enroll_token(args: argparse.Namespace) -> int:
    from server.identity import create_enrollment_token

    print(_in_session(args, lambda s: create_enrollment_token(s, timedelta(seconds=args.ttl_s), args.tag or [])))
    return 0


def _jobs_requeue(args: argparse.Namespace) -> int:
    from server.worker.queue import requeue_parked

    print(f"requeued {_in_session(args, lambda s: requeue_parked(s, args.package_id))} job(s)")
    return 0


def _local_options(parser: argparse.ArgumentParser) -> None:
    """--data-dir and --init on a command that opens the server's database itself."""
    parser.add_argument("--data-dir", default=argparse.SUPPRESS,
                        help="the server's embedded data directory (default: $TINYSPHERE_DATA_DIR, else "
                             "./tinysphere-data)")
    parser.add_argument("--init", action="store_true", default=argparse.SUPPRESS,
                        help="create the data directory if it does not exist yet")


def _version() -> str:
    try:
        return version(DISTRIBUTION)
    except PackageNotFoundError:  # run from a source tree that was never installed
        return "unknown (not installed)"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="tinysphere", description=__doc__, epilog=ENVIRONMENT,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    parser.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"],
                        help="least severe log level shown (default INFO)")
    parser.add_argument("--log-format", choices=["text", "json"], default=os.environ.get(LOG_FORMAT_ENV) or "text",
                        help=f"log lines as text or as JSON objects (default: ${LOG_FORMAT_ENV}, else text)")
    parser.add_argument("--debug", action="store_true", help="show the traceback of an error")
    parser.add_argument("--data-dir", help="embedded data directory (default: $TINYSPHERE_DATA_DIR, else "
                                           "./tinysphere-data)")
    parser.add_argument("--init", action="store_true",
                        help="let a local command create a new data directory (serve always may)")
    commands = parser.add_subparsers(dest="command", required=True)

    serve = commands.add_parser("serve", help="run the API (embedded engines when nothing is configured)")
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    serve.add_argument("--port", type=int, default=8000, help="port to listen on (default 8000)")
    serve.add_argument("--data-dir", default=argparse.SUPPRESS,
                       help="embedded data directory, created if missing (default: $TINYSPHERE_DATA_DIR, else "
                            "./tinysphere-data)")
    serve.add_argument("--worker", action=argparse.BooleanOptionalAction, default=None,
                       help="also run an import worker in-process (default: only when embedded)")
    serve.add_argument("--access-log", action=argparse.BooleanOptionalAction, default=True,
                       help="log every request (default: on)")
    serve.set_defaults(run=_serve)

    worker = commands.add_parser("worker", help="run an import worker")
    worker.add_argument("--once", action="store_true", help="process the due jobs, then exit")
    worker.add_argument("--health-file", help="touched on every poll, for container health checks")
    _local_options(worker)
    worker.set_defaults(run=_worker)

    migrate = commands.add_parser("migrate", help="apply database migrations")
    _local_options(migrate)
    migrate.set_defaults(run=_migrate)

    ui = commands.add_parser("mlflow-ui", help="serve MLflow's own UI on the server's tracking store (loopback)")
    ui.add_argument("--port", type=int, default=5000, help="loopback port (default 5000)")
    _local_options(ui)
    ui.set_defaults(run=_mlflow_ui)
    fold = commands.add_parser("mlflow-migrate", help="fold the per-package MLflow runs of earlier versions into "
                               "one run per device and model version (safe to run again)")
    _local_options(fold)
    fold.set_defaults(run=_mlflow_migrate)

    tokens = commands.add_parser("tokens", help="API tokens").add_subparsers(dest="action", required=True)
    create = tokens.add_parser("create", help="create a token in the server's database and print it")
    create.add_argument("--role", required=True, choices=[r.value for r in Role], help="what the token may do")
    create.add_argument("--name", help="a name to tell the token apart (default: '<role> token')")
    _local_options(create)
    create.set_defaults(run=_tokens_create)

    devices = commands.add_parser("devices", help="devices").add_subparsers(dest="action", required=True)
    enroll = devices.add_parser("enroll-token", help="create a one-time enrollment token and print it")
    enroll.add_argument("--ttl-s", type=int, default=24 * 3600, help="validity in seconds (default one day)")
    enroll.add_argument("--tag", action="append", help="tag given to the enrolled device (repeatable)")
    _local_options(enroll)
    enroll.set_defaults(run=_enroll_token)
    fleet_console.add_commands(devices, commands)

    jobs = commands.add_parser("jobs", help="import jobs").add_subparsers(dest="action", required=True)
    requeue = jobs.add_parser("requeue", help="give parked jobs a fresh set of attempts")
    requeue.add_argument("--package-id", help="only this package's jobs (default: every parked job)")
    _local_options(requeue)
    requeue.set_defaults(run=_jobs_requeue)
    registry_console.add_commands(commands)
    return parser


def _one_line(exc: BaseException, server: str | None) -> str | None:
    """The message of an expected error, on one line; None for anything else (a bug: its traceback is shown)."""
    if isinstance(exc, ValidationError):
        errors = exc.errors()
        where = ".".join(str(part) for part in errors[0]["loc"]) if errors else ""
        message = f"configuration error: {where + ': ' if where else ''}{errors[0]['msg'] if errors else exc}"
    elif isinstance(exc, RemoteError) and isinstance(exc.__cause__, urllib3.exceptions.MaxRetryError):
        message = f"cannot reach {server or 'the server'}: {fleet_console.reason(exc.__cause__.reason)}"
    elif isinstance(exc, TinySphereError):
        message = str(exc)
    elif isinstance(exc, OSError) and exc.strerror:
        message = f"{exc.filename}: {exc.strerror}" if exc.filename else exc.strerror
    else:
        return None
    return " ".join(message.split())


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `tinysphere` console script: exit status 2 and one line on stderr for an expected error."""
    args = _parser().parse_args(argv)
    _configure_logging(args.log_level, args.log_format)
    if not args.debug:  # its retries end in one error line of ours
        logging.getLogger("urllib3").setLevel(logging.ERROR)
    try:
        return int(args.run(args))
    except KeyboardInterrupt:
        print("tinysphere: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:
        message = _one_line(exc, getattr(args, "server", None))
        if message is None:
            raise
        if args.debug:
            traceback.print_exc()
        print(f"tinysphere: error: {message}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
