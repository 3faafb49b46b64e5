"""`tinysphere mlflow-ui`: MLflow's own UI on the server's tracking store, served on loopback.

The zero-configuration server keeps MLflow's tables in its embedded PostgreSQL and its artifacts in the
data directory; this starts `mlflow server` on that same store and artifact root and prints its address.
A server configured with an HTTP tracking URI already has an MLflow UI there: it is printed, nothing starts.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable

import urllib3
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

LOOPBACK = "127.0.0.1"


def display_uri(tracking_uri: str) -> str:
    """The tracking URI as printed: a database URI without its password."""
    if is_remote(tracking_uri):
        return tracking_uri
    try:
        return make_url(tracking_uri).render_as_string(hide_password=True)
    except ArgumentError:  # a file store path
        return tracking_uri


def is_remote(tracking_uri: str) -> bool:
    """True when the tracking URI is an MLflow server (which has its own UI)."""
    return tracking_uri.startswith(("http://", "https://"))


def command(tracking_uri: str, artifact_root: str | None, port: int) -> list[str]:
    """The `mlflow server` command line on the given store, bound to loopback."""
    argv = [sys.executable, "-m", "mlflow", "server", "--backend-store-uri", tracking_uri,
            "--host", LOOPBACK, "--port", str(port), "--workers", "1"]
    if artifact_root:
        argv += ["--default-artifact-root", artifact_root]
    return argv


def start(tracking_uri: str, artifact_root: str | None, port: int) -> subprocess.Popen[bytes]:
    """Start the UI in a process group of its own (`stop` ends it); MLflow's job runner (unused here) stays off."""
    env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    return subprocess.Popen(command(tracking_uri, artifact_root, port), env=env, start_new_session=True)


def stop(process: subprocess.Popen[bytes]) -> None:
    """End the UI and the web server processes it started."""
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def wait_ready(url: str, process: subprocess.Popen[bytes], timeout_s: float = 120.0) -> bool:
    """Wait until `url`/health answers; False if the process ended or time ran out first."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and process.poll() is None:
        try:
            if urllib3.request("GET", f"{url}/health", timeout=2.0, retries=False).status == 200:
                return True
        except (urllib3.exceptions.HTTPError, OSError):
            pass
        time.sleep(0.5)
    return False


def run(tracking_uri: str, artifact_root: str | None, port: int = 5000, say: Callable[[str], None] = print) -> int:
    """Serve MLflow's UI until interrupted (or say where it already is); returns the exit status."""
    if is_remote(tracking_uri):
        say(f"MLflow UI: {tracking_uri} (the server's MLflow tracking server)")
        return 0
    url = f"http://{LOOPBACK}:{port}"
    process = start(tracking_uri, artifact_root, port)
    try:
        if not wait_ready(url, process):
            say("MLflow UI did not start (see its output above)")
            return 1
        say(f"MLflow UI: {url} (Ctrl-C stops it)")
        return process.wait()
    except KeyboardInterrupt:
        return 0
    finally:
        stop(process)
