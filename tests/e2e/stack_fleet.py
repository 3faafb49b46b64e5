"""`scripts/simulate-fleet` for the stack test: the same options and Simulation, run until a file says stop.

    python -m tests.e2e.stack_fleet --server URL --token T --devices 100 --mode agents --duration 600 \\
        --stop-file STOP ...

`--duration` is only the longest it runs: the fleet stops when STOP exists (the test has told its story),
drains every outbox as the simulator does at its end, and prints the final report as JSON on stdout.
`--latency-floor-ms` sets the updaters' probation latency floor (the simulator keeps the device's 50 ms):
a hundred agents share one process and one frame thread next to the whole stack on two cores, where a
frame's wall time says more about the machine than about the model.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from functools import partial
from pathlib import Path

from device.updater.settings import ProbationGates
from simulator import agents
from simulator.cli import build_parser
from simulator.fleet import Simulation
from simulator.spec import FleetSpec


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    parser.add_argument("--stop-file", type=Path, required=True, help="the fleet stops once this file exists")
    parser.add_argument("--drain", type=float, default=30.0, help="give up draining after this long without progress")
    parser.add_argument("--latency-floor-ms", type=float, help="probation: a p95 under this is always accepted")
    args = parser.parse_args(argv)
    if args.latency_floor_ms is not None:
        agents.ProbationGates = partial(ProbationGates, latency_floor_ms=args.latency_floor_ms)  # type: ignore[misc, assignment]
    logging.basicConfig(level=logging.INFO if args.verbose else logging.ERROR, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")

    def say(line: str) -> None:
        sys.stderr.write(line + "\n")
        sys.stderr.flush()

    spec = FleetSpec(devices=args.devices, duration_s=args.duration, mode=args.mode, fps=args.fps,
                     heartbeat_s=args.heartbeat, sync_s=args.sync_interval, probation_s=args.probation,
                     name=args.name)
    workdir = args.workdir
    workdir.mkdir(parents=True, exist_ok=True)
    simulation = Simulation(spec, args.server, args.token, workdir, say=say, every_s=args.every)
    simulation.start()
    try:
        simulation.watch(spec.duration_s, until=lambda _: args.stop_file.exists())
        stopping = time.monotonic()
    finally:
        result = simulation.stop(args.drain)
    result["stop_s"] = round(time.monotonic() - stopping, 1)
    sys.stdout.write(json.dumps(result) + "\n")
    return 0 if result["alive"] == result["devices"] else 1


if __name__ == "__main__":
    sys.exit(main())
