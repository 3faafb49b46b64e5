"""The README and docs/ cannot rot: every fenced shell block is run as written, in order, on a fresh copy of
the working tree, unless its `docs-test` marker says why it cannot run here (see `markdown.py`).

The copy holds every file `git` would commit, beside a `.venv` that borrows this one's packages; a block runs
there in bash, with `.venv/bin` on PATH, port 8000 replaced by a free port, and no `TINYSPHERE_*` setting from
this process, so `tinysphere serve` is the zero-configuration server in the copy's `./tinysphere-data`.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import signal
import subprocess
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.docs.markdown import Block, blocks, markdown_files
from tests.server.processes import postmasters, reapers
from tests.utils.net import free_port
from tests.utils.wait import wait_until

ROOT = Path(__file__).resolve().parents[2]
BLOCKS = [block for relative in markdown_files(ROOT) for block in blocks(ROOT, relative)]
RUN_TIMEOUT_S = 240
WAIT_TIMEOUT_S = 120
EXTRAS = ("device", "server", "device,server", "device,server,dev")  # what scripts/ ask ensure_venv for
ran: set[str] = set()


def _copy_tree(target: Path) -> None:
    """Every file of the working tree that git would commit (tracked or new, not ignored, not deleted)."""
    listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=ROOT,
                            capture_output=True, check=True).stdout.decode().split("\0")
    for relative in filter(None, listed):
        source = ROOT / relative
        if source.is_file():
            (target / relative).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target / relative)


def _borrow_venv(target: Path) -> None:
    """A `.venv` of links to this one's, with its own install stamp, so ensure_venv finds it up to date and never
    installs the copy into the shared environment."""
    venv = ROOT / ".venv"
    (target / ".venv").mkdir()
    for entry in venv.iterdir():
        if entry.name != ".tinymlops-installed":
            (target / ".venv" / entry.name).symlink_to(entry)
    digest = hashlib.sha256((target / "pyproject.toml").read_bytes()).hexdigest()
    (target / ".venv" / ".tinymlops-installed").write_text("".join(f"{extras} {digest}\n" for extras in EXTRAS))


class Sandbox:
    """The fresh tree the blocks run in, and the background processes they started."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.port = free_port()
        self.background: list[tuple[Block, subprocess.Popen[bytes], Path]] = []
        inherited = {k: v for k, v in os.environ.items() if not k.startswith(("TINYSPHERE_", "MLFLOW_"))}
        self.env = {**inherited, "PATH": f"{directory / '.venv' / 'bin'}:{os.environ['PATH']}",
                    "PYTHONPATH": str(directory), "PIP_DRY_RUN": "1"}  # pip: never install anything here

    def script(self, block: Block) -> str:
        """The block as it runs here: the marker's replacements, then the free port for 8000."""
        text = block.text
        for old, new in block.replace:
            text = text.replace(old, new)
        text = text.replace("tinysphere serve", f"tinysphere serve --port {self.port}")
        return "set -eo pipefail\n" + text.replace("127.0.0.1:8000", f"127.0.0.1:{self.port}")

    def run(self, block: Block) -> None:
        if block.background:
            self.start(block)
            return
        done = subprocess.run(["bash", "-c", self.script(block)], cwd=self.directory, env=self.env,
                              capture_output=True, timeout=RUN_TIMEOUT_S, check=False)
        if done.returncode != 0:
            pytest.fail(f"{block.id} exited {done.returncode}:\n{block.text}\n--- stdout\n"
                        f"{done.stdout.decode(errors='replace')[-4000:]}\n--- stderr\n"
                        f"{done.stderr.decode(errors='replace')[-4000:]}")

    def start(self, block: Block) -> None:
        log = self.directory.parent / f"background-{len(self.background)}.log"
        with log.open("wb") as out:
            process = subprocess.Popen(["bash", "-c", self.script(block)], cwd=self.directory, env=self.env,
                                       stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        self.background.append((block, process, log))
        url = block.wait.replace("127.0.0.1:8000", f"127.0.0.1:{self.port}") if block.wait else None
        deadline = time.monotonic() + (WAIT_TIMEOUT_S if url else 3)
        while time.monotonic() < deadline:
            if process.poll() is not None:
                pytest.fail(f"{block.id} exited {process.returncode}:\n{block.text}\n{log.read_text()[-4000:]}")
            if url and _answers(url):
                return
            time.sleep(0.5)
        if url:
            pytest.fail(f"{block.id}: {url} did not answer within {WAIT_TIMEOUT_S} s:\n{log.read_text()[-4000:]}")

    def stop(self) -> None:
        """SIGTERM to each background block's process group, newest first (SIGKILL after 30 s)."""
        for _, process, _ in reversed(self.background):
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
                try:
                    process.wait(30)
                except subprocess.TimeoutExpired:
                    os.killpg(process.pid, signal.SIGKILL)
                    process.wait()


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:  # noqa: S310 - loopback
            return bool(response.status == 200)
    except OSError:
        return False


@pytest.fixture(scope="module")
def sandbox() -> Iterator[Sandbox]:
    # Not under pytest's basetemp, which each new pytest session on the machine makes private (0700) again:
    # that would shut the embedded PostgreSQL's system user out of its files while it runs.
    parent = Path(tempfile.mkdtemp(prefix="tinymlops-docs-"))
    tree = parent / "tinymlops"
    tree.mkdir()
    box = Sandbox(tree)
    try:
        _copy_tree(tree)
        _borrow_venv(tree)
        yield box
    finally:
        box.stop()
        data = tree / "tinysphere-data"  # the embedded PostgreSQL stops after its last user: wait for it
        wait_until(lambda: not postmasters(data / "postgres") and not reapers(data), 60, "the embedded PostgreSQL "
                   "to stop")
        shutil.rmtree(parent, ignore_errors=True)


def _param(block: Block) -> object:
    marks = [pytest.mark.skip(reason=f"{block.id}: {block.skip}")] if block.skip else []
    return pytest.param(block, id=block.id, marks=marks)


@pytest.mark.slow
@pytest.mark.parametrize("block", [_param(block) for block in BLOCKS])
def test_block(block: Block, sandbox: Sandbox) -> None:
    sandbox.run(block)
    ran.add(block.id)


def test_every_unmarked_block_ran() -> None:
    expected = {block.id for block in BLOCKS if not block.skip}
    assert expected - ran == set(), "blocks that should have run (run the whole module)"


def test_the_quick_start_and_the_simulated_fleet_are_run() -> None:
    running = [block.text for block in BLOCKS if block.path == "README.md" and not block.skip]
    for command in (".venv/bin/tinysphere serve", ".venv/bin/tinysphere tokens create", "scripts/simulate-fleet",
                    ".venv/bin/tinylcm replay"):
        assert any(command in text for text in running), command
    assert all(block.skip.strip() for block in BLOCKS if block.skip is not None)
