"""`scripts/simulate-fleet`: enroll N devices with a server and run them, printing a live summary.

    scripts/simulate-fleet --server http://127.0.0.1:8000 --token $TOKEN --devices 20 --duration 120 \\
        --drift unseen@120 --fault offline@30:10

The token is an operator token (`tinysphere tokens create --role operator`), used to create one
enrollment token per device and to read the fleet; it may also come from TINYSPHERE_TOKEN.
The final summary is printed as JSON on stdout; the live lines go to stderr.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import tempfile
from pathlib import Path

from device.errors import TinyLCMError
from simulator.fleet import Simulation
from simulator.spec import FleetSpec, parse_fault


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="simulate-fleet", description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    parser.add_argument("--server", required=True, help="server URL, e.g. http://127.0.0.1:8000")
    parser.add_argument("--token", default=os.environ.get("TINYSPHERE_TOKEN", ""),
                        help="operator token (default: $TINYSPHERE_TOKEN)")
    parser.add_argument("--devices", type=int, required=True, help="how many devices (1-1000)")
    parser.add_argument("--duration", type=float, required=True, help="seconds to run")
    parser.add_argument("--mode", choices=("auto", "processes", "agents"), default="auto",
                        help="two processes per device, or agents sharing this process (auto: processes up to 10)")
    parser.add_argument("--fps", type=float, default=2.0, help="frames per second of each device's camera")
    parser.add_argument("--drift", help="drift injected into the devices' cameras, e.g. unseen@60 or noise@100")
    parser.add_argument("--drift-share", type=float, default=1.0, help="fraction of the devices that drift")
    parser.add_argument("--fault", action="append", default=[], metavar="SPEC",
                        help="offline@T:D (network cut at T s for D s) or kill@T (kill -9, then boot); repeatable")
    parser.add_argument("--heartbeat", type=float, default=2.0, help="heartbeat interval of each device (s)")
    parser.add_argument("--sync-interval", type=float, default=5.0, help="sync interval of each device (s)")
    parser.add_argument("--probation", type=float, default=30.0, help="updater probation window (s)")
    parser.add_argument("--name", default="sim", help="device name prefix and tag")
    parser.add_argument("--root", type=Path, help="TUF root.json to pin (default: fetch root v1 from the server)")
    parser.add_argument("--workdir", type=Path, help="where the devices' data dirs go (default: a temp dir)")
    parser.add_argument("--every", type=float, default=5.0, help="seconds between two summary lines")
    parser.add_argument("-v", "--verbose", action="store_true", help="device logs on stderr too")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.ERROR, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")

    def say(line: str) -> None:
        sys.stderr.write(line + "\n")
        sys.stderr.flush()

    try:
        spec = FleetSpec(devices=args.devices, duration_s=args.duration, mode=args.mode, fps=args.fps,
                         drift=args.drift, drift_share=args.drift_share,
                         faults=tuple(parse_fault(f) for f in args.fault), heartbeat_s=args.heartbeat,
                         sync_s=args.sync_interval, probation_s=args.probation, name=args.name)
        root = args.root.read_bytes() if args.root else None
        with tempfile.TemporaryDirectory(prefix="tinymlops-fleet-") as tmp:
            workdir = args.workdir or Path(tmp)
            workdir.mkdir(parents=True, exist_ok=True)
            result = Simulation(spec, args.server, args.token, workdir, root=root, say=say,
                                every_s=args.every).run()
    except (TinyLCMError, OSError) as exc:
        say(f"simulate-fleet: {exc}")
        return 2
    except KeyboardInterrupt:
        return 130
    sys.stdout.write(json.dumps(result) + "\n")
    return 0 if result["alive"] == result["devices"] else 1
