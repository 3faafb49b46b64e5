"""`scripts/demo` tells the whole loop on a fresh data dir: drift appears on the factory model, v2 goes from
MLflow through a signed bundle and three waves to every device and the drift subsides, and a broken bundle
is stopped at its canary and rolled back. The demo runs exactly as a newcomer runs it, with fewer devices."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

from tests.e2e.server_proc import ROOT
from tests.utils.net import free_port


def test_the_demo_tells_the_whole_loop(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TINYSPHERE_", "MLFLOW_"))}
    env.update(DEMO_DIR=str(tmp_path / "demo"), DEMO_DEVICES="3", DEMO_PORT=str(free_port()), DEMO_KEEP_SERVER="0")
    done = subprocess.run([str(ROOT / "scripts" / "demo")], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=900)
    out = done.stdout + done.stderr
    (tmp_path / "demo.out").write_text(out)  # the whole narration, for a failed run
    assert done.returncode == 0, out[-6000:]
    assert re.search(r"dashboard: http://127\.0\.0\.1:\d+/ui/", out) and re.search(r"\n    tso_\S{20,}\n", out)
    assert "drift: every device raised alarms" in out
    assert "MLflow: run" in out and "published digits 2.0.0 from models:/digits@champion" in out
    assert "rollout 1: completed" in out
    rates = re.search(r"drift-alarm rate per 1000 frames: ([\d.]+) on 1\.0\.0 -> ([\d.]+) on 2\.0\.0", out)
    assert rates and float(rates.group(2)) < float(rates.group(1)), out[-3000:]
    assert re.search(r"rollout 2 wave 0: rolled_back - ", out)
    assert "rollout 2: paused, rolled back: True; 1 of 3 devices (the canary) ever saw 2.0.1" in out
    assert '"models": {"2.0.0": 3}' in out
