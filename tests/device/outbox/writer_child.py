"""Child process of the crash tests: appends records (some with blobs) until killed.

`writer_child.py DB` appends without pause and prints `A <seq>` for each seq `append` returned and
`C <seq>` each time a batch is committed (every seq up to it is acknowledged as durable).
`writer_child.py DB queued N M` commits N records (the last one with a writer that then lingers for an
hour), appends M more, prints `QUEUED <first> <last>` with their seqs and waits to be killed with them in the queue.
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


def _append(box: Outbox, i: int) -> int | None:
    if i % 25 == 0:
        return box.append("drift_event", {"i": i}, blob=bytes([i % 256]) * 3000)
    return box.append("prediction", {"i": i, "pad": "p" * 200})


def run(path: str) -> None:
    box = Outbox(path, OutboxSettings(linger_s=0.001, queue_size=4096), observer=Printer())
    sys.stdout.write("READY\n")
    sys.stdout.flush()
    i = 0
    while True:
        i += 1
        seq = _append(box, i)
        if seq is not None:
            sys.stdout.write(f"A {seq}\n")
            sys.stdout.flush()
        if i % 10 == 0:
            time.sleep(0.002)  # ~a few thousand records/s: many commits, each with a few blobs


def queued(path: str, committed: int, waiting: int) -> None:
    box = Outbox(path, OutboxSettings(linger_s=0))
    for i in range(committed - 1):
        _append(box, i + 1)
    box.close()
    box = Outbox(path, OutboxSettings(linger_s=3600))
    _append(box, committed)
    assert box.flush(30)  # the writer committed it and now lingers for an hour
    seqs = [_append(box, committed + i + 1) for i in range(waiting)]
    assert None not in seqs and len(box._intake) == waiting
    sys.stdout.write(f"QUEUED {seqs[0]} {seqs[-1]}\n")
    sys.stdout.flush()
    time.sleep(3600)


if __name__ == "__main__":
    if sys.argv[2:3] == ["queued"]:
        queued(sys.argv[1], int(sys.argv[3]), int(sys.argv[4]))
    else:
        run(sys.argv[1])
