"""The device process of the end-to-end tests: the real pipeline (digits source, factory bundle) feeding
the real outbox, with the real sync service talking to the server through the fault proxy.

It writes a ledger (one line per event, flushed at once, so a kill -9 loses at most a partial line):
`A seq` a seq `append` handed out, `C first last` committed seqs, `E seq...` evicted, `D seq...`
delivered, `F n` frames processed, `K kind=n...` records appended by kind, `L id seq label` a label
received, `P` production finished, `DONE` outbox drained.
`--kill-at point:n` kills the process (SIGKILL) at the n-th time it reaches `packing`, `uploading`
(after the server stored the package, before the device handled the answer), `deleting` (inside
the delete transaction, before COMMIT) or `frame` (after the frame's records were appended, so some
wait in the outbox's queue). The kill never falls between an `append` and its `A` line.
"""

from __future__ import annotations

import argparse
import datetime as dt
import logging
import os
import signal
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

from device.bundle import factory_bundle
from device.capture import open_source
from device.config import Config
from device.outbox import Outbox, OutboxSettings
from device.outbox import intake as intake_module
from device.outbox import store as store_module
from device.pipeline.pipeline import Pipeline
from device.runner import Runner
from device.sync import ClientSettings, PackSettings, RetryPolicy, SyncService, SyncSettings
from device.sync import client as client_module
from device.sync import packer as packer_module


class Ledger:
    def __init__(self, path: Path) -> None:
        self._file = path.open("a", buffering=1)
        self.lock = threading.RLock()  # held from an `append` to its `A` line, and by the kill

    def write(self, line: str) -> None:
        with self.lock:
            self._file.write(line + "\n")
            self._file.flush()

    def committed(self, seqs: list[int]) -> None:
        self.write(f"C {min(seqs)} {max(seqs)}")

    def evicted(self, seqs: list[int]) -> None:
        self.write("E " + " ".join(map(str, seqs)))

    def delivered(self, seqs: list[int]) -> None:
        self.write("D " + " ".join(map(str, seqs)))

    def labels(self, labels: list[dict[str, Any]]) -> None:
        for label in labels:
            self.write(f"L {label['id']} {label['seq']} {label['label']}")


def _kill_at(point: str, nth: int, ledger: Ledger) -> Callable[[], None]:
    """Install a SIGKILL at the n-th arrival at `point`; the arrival to call for `frame`."""
    count = [0]

    def arrive() -> None:
        count[0] += 1
        if count[0] == nth:
            with ledger.lock:
                os.kill(os.getpid(), signal.SIGKILL)

    if point == "frame":
        return arrive
    if point == "packing":
        build = packer_module.build

        def packing(*args: Any, **kwargs: Any) -> Any:
            arrive()
            return build(*args, **kwargs)

        packer_module.build = packing
    elif point == "uploading":
        put = client_module.SyncClient.put_package

        async def uploading(self: Any, package: Any) -> bool:
            created = await put(self, package)
            arrive()
            return created

        client_module.SyncClient.put_package = uploading  # type: ignore[method-assign]
    elif point == "deleting":
        delete = store_module.RecordStore.delete_range

        def deleting(self: Any, first: int, last: int) -> Any:
            removed = delete(self, first, last)
            arrive()
            return removed

        store_module.RecordStore.delete_range = deleting  # type: ignore[method-assign]
    else:
        raise SystemExit(f"unknown kill point {point}")
    return lambda: None


class JumpingClock(dt.datetime):
    """`datetime` whose now() is off by `offset` (the tests move it back and forth)."""

    offset = dt.timedelta(0)

    @classmethod
    def now(cls, tz: dt.tzinfo | None = None) -> JumpingClock:
        return super().now(tz) + cls.offset


class JumpingTime:
    """Stand-in for the `time` module of the outbox intake: wall time follows `JumpingClock.offset`."""

    @staticmethod
    def time() -> float:
        return time.time() + JumpingClock.offset.total_seconds()


JUMPS = [(0, dt.timedelta(0)), (40, dt.timedelta(days=-3)), (80, dt.timedelta(days=400)), (120, dt.timedelta(hours=-2))]


def _settings(args: argparse.Namespace) -> SyncSettings:
    retry = RetryPolicy(attempts=4, initial_s=0.05, max_wait_s=1.5, max_total_s=20)
    return SyncSettings(
        server_url=args.server_url, interval_s=args.sync_interval, heartbeat_interval_s=1.0,
        identity_path=args.identity_path or str(Path(args.data_dir) / "state" / "identity.json"),
        enrollment_token=args.token,
        device_name="e2e", client=ClientSettings(connect_timeout_s=2, read_timeout_s=args.read_timeout,
                                                 request_timeout_s=10, retry=retry),
        pack=PackSettings(max_bytes=args.pack_max_bytes),
    )


def _count_kinds(outbox: Outbox, ledger: Ledger) -> Counter[str]:
    """Count what the pipeline appended (and the outbox accepted), by kind; ledger each seq handed out."""
    kinds: Counter[str] = Counter()
    append = outbox.append

    def counting(kind: str, data: dict[str, Any], blob: bytes | None = None, blob_ext: str = "jpg") -> int | None:
        with ledger.lock:
            seq = append(kind, data, blob, blob_ext)
            if seq is not None:
                kinds[kind] += 1
                ledger.write(f"A {seq}")
        return seq

    outbox.append = counting  # type: ignore[method-assign]
    return kinds


def _produce(runner: Runner, outbox: Outbox, args: argparse.Namespace, ledger: Ledger,
             after_frame: Callable[[], None]) -> None:
    source = open_source("digits", drift=args.drift, seed=args.seed, size=runner.pipeline.bundle.frame_size)
    period = 1.0 / args.fps
    frames = 0
    for seq, frame in enumerate(source):
        if frames >= args.frames:
            break
        started = time.monotonic()
        if args.clock_jumps:
            JumpingClock.offset = [off for at, off in JUMPS if frames >= at][-1]
        runner.step(frame, seq)
        if args.image_kb:  # a capture kept for the server (priority 1): fills a small disk quickly
            outbox.append("image", {"frame_seq": seq}, blob=os.urandom(args.image_kb * 1024), blob_ext="bin")
        frames += 1
        after_frame()
        if frames % 10 == 0:
            ledger.write(f"F {frames}")
        time.sleep(max(0.0, period - (time.monotonic() - started)))
    source.close()
    ledger.write(f"F {frames}")


def _args() -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    for name, kind, default in [("data-dir", str, None), ("server-url", str, None), ("token", str, ""),
                                ("ledger", str, None), ("frames", int, 100), ("fps", float, 50.0),
                                ("max-mb", float, 64.0), ("pack-max-bytes", int, 1 << 20),
                                ("sync-interval", float, 0.5), ("read-timeout", float, 3.0),
                                ("drift", str, "unseen@30"), ("seed", int, 0), ("kill-at", str, ""),
                                ("identity-path", str, ""), ("image-kb", int, 0),
                                ("commit-interval", float, OutboxSettings.linger_s)]:
        parser.add_argument(f"--{name}", type=kind, default=default)
    parser.add_argument("--clock-jumps", action="store_true")
    return parser.parse_args()


def main() -> int:
    args = _args()
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(threadName)s %(name)s: %(message)s")
    ledger = Ledger(Path(args.ledger))
    after_frame: Callable[[], None] = lambda: None  # noqa: E731
    if args.kill_at:
        point, nth = args.kill_at.split(":")
        after_frame = _kill_at(point, int(nth), ledger)
    if args.clock_jumps:
        intake_module.time = JumpingTime  # type: ignore[assignment]
    outbox = Outbox(Path(args.data_dir) / "outbox.db",
                    OutboxSettings(max_mb=args.max_mb, linger_s=args.commit_interval), observer=ledger)
    pipeline = Pipeline.from_bundle(factory_bundle(), Config())
    status = lambda: {"model_version": pipeline.bundle.version,  # noqa: E731
                      "health": {"lost_in_crash": outbox.lost_in_crash}}
    sync = SyncService(outbox, _settings(args), status=status, on_labels=ledger.labels).start()
    kinds = _count_kinds(outbox, ledger)
    _produce(Runner(pipeline, outbox), outbox, args, ledger, after_frame)
    ledger.write("K " + " ".join(f"{k}={v}" for k, v in sorted(kinds.items())))
    ledger.write("P")
    while outbox.depth():
        sync.trigger()
        time.sleep(0.2)
    sync.heartbeat()  # evictions and depth reach the server before the process ends
    sync.heartbeat()  # and labels received in the one before are acknowledged
    ledger.write("DONE")
    sync.close()
    outbox.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
