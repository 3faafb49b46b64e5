"""Child process of the crash test: appends records (some with blobs) until killed.

Prints `C <seq>` each time a batch is committed: every seq up to it is acknowledged as durable.
"""

from __future__ import annotations

import sys
import time

from device.outbox import Outbox, OutboxSettings


class Printer:
    def committed(self, seqs: list[int]) -> None:
        sys.stdout.write(f"C {max(seqs)}\n")
        sys.stdout.flush()

    def evicted(self, seqs: list[int]) -> None:
        sys.stdout.write(f"E {' '.join(map(str, seqs))}\n")
        sys.stdout.flush()

    def delivered(self, seqs: list[int]) -> None:
        pass


def main(path: str) -> None:
    box = Outbox(path, OutboxSettings(linger_s=0.001, queue_size=4096), observer=Printer())
    sys.stdout.write("READY\n")
    sys.stdout.flush()
    i = 0
    while True:
        i += 1
        if i % 25 == 0:
            box.append("drift_event", {"i": i}, blob=bytes([i % 256]) * 3000)
        else:
            box.append("prediction", {"i": i, "pad": "p" * 200})
        if i % 10 == 0:
            time.sleep(0.002)  # ~a few thousand records/s: many commits, each with a few blobs


if __name__ == "__main__":
    main(sys.argv[1])
