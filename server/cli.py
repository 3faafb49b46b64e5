"""`tinysphere`: serve the API, run the worker, migrate, manage tokens, keys and bundles."""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING

from pydantic import ValidationError

from server.config import Settings
from server.db.models import Role
from server.registry import console as registry_console

if TYPE_CHECKING:
    from sqlalchemy.orm import Session


def _settings(args: argparse.Namespace) -> Settings:
    overrides = {"data_dir": Path(args.data_dir)} if getattr(args, "data_dir", None) else {}
    return Settings(**overrides)  # type: ignore[arg-type]


def _serve(args: argparse.Namespace) -> int:
    import uvicorn

    from server.api.app import create_app
    from server.startup import first_admin_token, prepare
    from server.worker.runner import Worker

    settings = _settings(args)
    run_worker = args.worker if args.worker is not None else settings.database_url is None
    backends = prepare(settings, with_mlflow=run_worker)
    token = first_admin_token(backends)
    if token:
        print(f"Admin API token (shown once, keep it): {token}", flush=True)
    # uvicorn re-raises SIGTERM after its graceful shutdown; exiting normally instead lets the
    # embedded PostgreSQL be stopped by its atexit hook.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    stop = threading.Event()
    if run_worker:
        threading.Thread(target=Worker(backends).run_forever, args=(stop,), name="worker", daemon=True).start()
    try:
        uvicorn.run(create_app(backends), host=args.host, port=args.port, log_level=args.log_level.lower(),
                    access_log=args.access_log)
    finally:
        stop.set()
        backends.close()
    return 0


def _worker(args: argparse.Namespace) -> int:
    from server.startup import prepare
    from server.worker.runner import Worker

    backends = prepare(_settings(args), with_mlflow=True)
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

    settings = _settings(args)
    migrate(resolve(settings).database_url, settings)
    print("database is up to date")
    return 0


def _in_session(args: argparse.Namespace, change: Callable[[Session], object]) -> object:
    """Run one change in a committed transaction against the configured (or embedded) database."""
    from server.startup import prepare

    backends = prepare(_settings(args), with_mlflow=False)
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


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="tinysphere", description=__doc__)
    parser.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    parser.add_argument("--data-dir", help="embedded data directory (default ./tinysphere-data)")
    commands = parser.add_subparsers(dest="command", required=True)

    serve = commands.add_parser("serve", help="run the API (embedded engines when nothing is configured)")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument("--data-dir", default=argparse.SUPPRESS, help="embedded data directory")
    serve.add_argument("--worker", action=argparse.BooleanOptionalAction, default=None,
                       help="also run an import worker in-process (default: only when embedded)")
    serve.add_argument("--access-log", action=argparse.BooleanOptionalAction, default=True)
    serve.set_defaults(run=_serve)

    worker = commands.add_parser("worker", help="run an import worker")
    worker.add_argument("--once", action="store_true", help="process the due jobs, then exit")
    worker.add_argument("--health-file", help="touched on every poll, for container health checks")
    worker.set_defaults(run=_worker)

    commands.add_parser("migrate", help="apply database migrations").set_defaults(run=_migrate)

    tokens = commands.add_parser("tokens", help="operator API tokens").add_subparsers(dest="action", required=True)
    create = tokens.add_parser("create", help="create a token and print it")
    create.add_argument("--role", required=True, choices=[r.value for r in Role])
    create.add_argument("--name")
    create.set_defaults(run=_tokens_create)

    devices = commands.add_parser("devices", help="devices").add_subparsers(dest="action", required=True)
    enroll = devices.add_parser("enroll-token", help="create a one-time enrollment token and print it")
    enroll.add_argument("--ttl-s", type=int, default=24 * 3600)
    enroll.add_argument("--tag", action="append", help="tag given to the enrolled device (repeatable)")
    enroll.set_defaults(run=_enroll_token)

    jobs = commands.add_parser("jobs", help="import jobs").add_subparsers(dest="action", required=True)
    requeue = jobs.add_parser("requeue", help="give parked jobs a fresh set of attempts")
    requeue.add_argument("--package-id")
    requeue.set_defaults(run=_jobs_requeue)
    registry_console.add_commands(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `tinysphere` console script."""
    args = _parser().parse_args(argv)
    logging.basicConfig(level=args.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        return int(args.run(args))
    except ValidationError as exc:
        print(f"configuration error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
