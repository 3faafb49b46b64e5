"""The import contracts in pyproject.toml hold, and they bite: a wrong-way import or a new cycle breaks them."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("contract", "device", "server", "simulator")
LINT = [sys.executable, "-c", "import sys; from importlinter.cli import lint_imports_command as c; sys.exit(c())"]


def _lint(tree: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(tree)}  # the copy's packages before the installed (editable) ones
    return subprocess.run([*LINT, "--no-cache"], cwd=tree, env=env, capture_output=True, text=True, timeout=600)


def _copy(tmp_path: Path) -> Path:
    tree = tmp_path / "tree"
    for name in PACKAGES:
        shutil.copytree(ROOT / name, tree / name, ignore=shutil.ignore_patterns("__pycache__", "*.tflite", "*.npz",
                                                                                 "static", "templates"))
    shutil.copy(ROOT / "pyproject.toml", tree / "pyproject.toml")
    return tree


def _add_import(path: Path, line: str) -> None:
    text = path.read_text()
    head, sep, rest = text.partition("from __future__ import annotations\n")
    path.write_text(head + sep + line + "\n" + rest)


def test_the_tree_keeps_every_contract(tmp_path: Path) -> None:
    out = _lint(_copy(tmp_path))
    assert out.returncode == 0, out.stdout + out.stderr
    assert "7 kept, 0 broken" in out.stdout


def test_a_wrong_way_import_and_a_cycle_break_the_contracts(tmp_path: Path) -> None:
    tree = _copy(tmp_path)
    _add_import(tree / "contract" / "bundle.py", "import device.errors  # noqa")  # the contract on a side
    _add_import(tree / "server" / "storage" / "local.py", "import device.state  # noqa")  # server -> device
    _add_import(tree / "device" / "knn.py", "import device.adapt  # noqa")  # knn <-> adapt: a cycle, a layer upwards
    _add_import(tree / "server" / "db" / "models.py", "import server.ui  # noqa")  # a low layer importing a high one
    out = _lint(tree)
    assert out.returncode != 0
    broken = {line.removesuffix(" BROKEN").strip() for line in out.stdout.splitlines() if line.endswith("BROKEN")}
    assert {"the contract package imports neither side nor the simulator",
            "the server imports nothing from the device or the simulator",
            "no import cycle between sibling modules, at any depth"} <= broken, out.stdout
    assert {"device layers", "server layers"} <= broken, out.stdout
