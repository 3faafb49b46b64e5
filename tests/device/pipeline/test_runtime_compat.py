"""The factory model gives the same answers under ai-edge-litert (numpy 2) and tflite-runtime 2.14 (numpy<2).

tflite-runtime 2.14 is what 32-bit Raspberry Pi OS gets; it lives in its own cached venv under `.venvs/`,
installed from the device image's constraints file.
"""

import json
import os
import subprocess
import sys
import venv
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
PROBE = Path(__file__).with_name("probe_runtime.py")
BUNDLE = ROOT / "device" / "models" / "digits"
TFLITE_VENV = ROOT / ".venvs" / "tflite-runtime-2.14"
CONSTRAINTS = ROOT / "device" / "constraints-armv7.txt"  # the armv7 image's exact versions


def _tflite_python() -> Path:
    python = TFLITE_VENV / "bin" / "python"
    stamp = TFLITE_VENV / ".pins"
    pins = CONSTRAINTS.read_text()
    if not python.exists() or not stamp.exists() or stamp.read_text() != pins:
        venv.create(TFLITE_VENV, with_pip=True, clear=True)
        subprocess.run([python, "-m", "pip", "install", "--quiet", "-c", CONSTRAINTS, "numpy", "tflite-runtime",
                        "pillow"], check=True)
        stamp.write_text(pins)
    return python


def _probe(python: Path | str, n: int = 200) -> dict:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    out = subprocess.run([python, str(PROBE), str(BUNDLE), str(n)], env=env, capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


@pytest.mark.slow
def test_same_predictions_under_both_runtimes() -> None:
    litert = _probe(sys.executable)
    legacy = _probe(_tflite_python())
    assert litert["runtime"].startswith("ai_edge_litert")
    assert legacy["runtime"].startswith("tflite_runtime")
    assert litert["numpy"].startswith("2.") and legacy["numpy"].startswith("1.")
    assert litert["predictions"] == legacy["predictions"]
    # Kernels may round an int8 value differently: at most one quantization step apart.
    step = json.loads((BUNDLE / "bundle.json").read_text())["outputs"]["features"]["quantization"][0]
    diffs = [abs(a - b) for fa, fb in zip(litert["features"], legacy["features"], strict=True)
             for a, b in zip(fa, fb, strict=True)]
    assert max(diffs) <= step * 1.001
