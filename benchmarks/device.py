"""Device fitness: peak memory of the two device services and the outbox's writes to the SD card.

`python -m benchmarks.device --json` runs `tinylcm run` (MobileNetV2 fixture, synthetic camera at
the model's input) and `tinylcm updater` side by side as real processes for `--seconds`, then reads
each one's peak RSS (VmHWM) and bytes written to storage (/proc/<pid>/io) and scales writes to an
hour. The Pi Zero 2W has 512 MB; the TinyLCM proof of concept peaked at 212 MB for inference alone.
The default window (90 s at 5 fps) takes in two of the service's periodic state saves (every 200
frames), not only the outbox's commits: a shorter one would leave them out of the hourly figure.
"""

from __future__ import annotations

import argparse
import json
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

FIXTURE = Path(__file__).resolve().parent / "fixtures" / "mobilenetv2"
NOT_IN_IMAGE = ("pandas", "boto3", "botocore")


def _proc_field(pid: int, name: str, key: str) -> int:
    for line in Path(f"/proc/{pid}/{name}").read_text().splitlines():
        if line.startswith(key):
            return int(line.split()[1])
    raise KeyError(key)


def _sample(pid: int) -> dict[str, int]:
    return {"peak_rss_kb": _proc_field(pid, "status", "VmHWM:"), "write_bytes": _proc_field(pid, "io", "write_bytes:")}


def run(seconds: float, fps: float, bundle: Path, commit_s: float | None = None) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        config = Path(tmp) / "device.json"
        config.write_text(json.dumps({
            "device": {"data_dir": tmp, "health_port": 0},
            "camera": {"source": "digits", "fps": fps, "realtime": True},
            "feature_extractor": {"bundle": str(bundle)},
            "outbox": {} if commit_s is None else {"commit_interval_s": commit_s},
        }))
        # As in the device image, which has neither pandas nor boto3: sqlite-utils imports pandas and
        # securesystemslib imports boto3 when they are present (this venv has them for the server and tests).
        cmd = [sys.executable, "-c", "import sys; sys.modules.update(dict.fromkeys(NOT_IN_IMAGE)); "
               "from device.cli import main; sys.exit(main(sys.argv[1:]))".replace("NOT_IN_IMAGE", repr(NOT_IN_IMAGE))]
        services = {name: subprocess.Popen([*cmd, name, "--config", str(config)], stdout=subprocess.DEVNULL,
                                           stderr=subprocess.DEVNULL) for name in ("run", "updater")}
        time.sleep(seconds)
        samples = {name: _sample(proc.pid) for name, proc in services.items()}
        for proc in services.values():
            proc.send_signal(signal.SIGTERM)
        codes = {name: proc.wait(timeout=60) for name, proc in services.items()}
        outbox = sum(p.stat().st_size for p in Path(tmp).rglob("outbox*") if p.is_file())
    per_hour = 3600.0 / seconds
    inference, updater = samples["run"], samples["updater"]
    return {
        "model": bundle.name,
        "seconds": seconds,
        "fps": fps,
        "inference_peak_rss_mb": round(inference["peak_rss_kb"] / 1024, 1),
        "updater_peak_rss_mb": round(updater["peak_rss_kb"] / 1024, 1),
        "total_peak_rss_mb": round((inference["peak_rss_kb"] + updater["peak_rss_kb"]) / 1024, 1),
        "sd_write_bytes_per_hour": int((inference["write_bytes"] + updater["write_bytes"]) * per_hour),
        "outbox_bytes_per_hour": int(outbox * per_hour),
        "exit_codes": codes,
        "note": "x86-64 with ai-edge-litert; pandas and boto3 blocked as in the device image",
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=90.0, help="how long both services run")
    parser.add_argument("--fps", type=float, default=5.0, help="camera frame rate of the inference service")
    parser.add_argument("--bundle", type=Path, default=FIXTURE)
    parser.add_argument("--commit-s", type=float, help="outbox.commit_interval_s (default: the shipped one)")
    parser.add_argument("--json", action="store_true", help="print JSON only (the default output anyway)")
    args = parser.parse_args()
    print(json.dumps(run(args.seconds, args.fps, args.bundle, args.commit_s), indent=None if args.json else 2))


if __name__ == "__main__":
    main()
