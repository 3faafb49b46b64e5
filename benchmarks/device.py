"""Device fitness: memory of the two device services and their writes to the SD card, and where both go.

`python -m benchmarks.device --json` runs `tinylcm run` (MobileNetV2 fixture, synthetic camera at the
model's input) and `tinylcm updater` as real processes for `--seconds`, then reads each one's peak RSS
(VmHWM) and bytes written to storage (/proc/<pid>/io), and scales writes to an hour. The Pi Zero 2W has
512 MB; the TinyLCM proof of concept peaked at 212 MB for inference alone. The default window (90 s at
5 fps) takes in two of the service's periodic state saves (every 200 frames), not only the outbox's
commits: a shorter one would leave them out of the hourly figure.

Each service runs with the environment its tree's image sets (the `ENV` lines of device/Dockerfile.armv7,
less PATH) and the flags its tree's docker-compose.yml gives it (the updater's `--reexec-after-download`), so
the figures are those of what the image runs, and with pandas and boto3 kept out, as the image has neither
(this venv has them for the server and tests; with boto3 importable securesystemslib loads it, +10 MB).

`--baseline <git ref>` runs the same pair from a `git worktree` of that ref at the same time, in the same
run: both pairs see the same machine load for the same window, and memory, which is what the figures are
about, does not depend on it (each process has its own); only CPU is shared, and at 5 fps the pairs are
far from saturating two cores (the frames each inference service processed are reported to show it).
Running them one after the other would double the time and compare two different loads.

Without `--server-url` the inference service has no server: it waits to be provisioned, and loads no sync client
(aiohttp). `--server-url http://127.0.0.1:9` (a closed port) is a device that syncs with a server that never
answers: the whole sync client loaded, its thread retrying, as a provisioned device while its server is down.

`--update` is a device taking an update: a signed TUF repository (built as the updater tests build theirs,
tests/device/updater/tuf_server.py) served over loopback HTTP offers a kNN-only update (1.0.1) of the bundle;
each device is provisioned and enrolled, runs the bundle from slot-a (`models/current`, which the inference
service follows), and is told to want 1.0.1 `--update-at` seconds into the window (state/desired.json, as a
heartbeat answer would). The updater downloads it, verifies it, smoke-tests it (a child process loading the
whole pipeline), flips the slot, watches probation (`--probation-s`) and commits, while inference runs. A
sampler reads, every 0.1 s, each service's RSS, the peak RSS of the processes they started (the smoke test;
its peak, not its RSS, as it lives about a second) and the updater's journal state, and `update` in each
pair's result gives per phase (before the update is desired; the round, until the journal switches; probation,
until COMMITTED; after) the peak of each service, the largest SUM of the two and of the two with their
children, and the seconds either sum was above 120 MB. An updater that re-executes itself after the round
starts a new process image: its VmHWM (`peak_rss_mb`) is then the new image's, the round's peak is the
sampled one, and its `modules` count both images' imports. With `--baseline`, both pairs update from the
same repository at the same time. `transitions` lists the updater's journal history (UTC time, state, reason).

Where the memory goes: at the end of the window, /proc/<pid>/smaps_rollup (anonymous vs file-backed)
and /proc/<pid>/smaps grouped by what is mapped (a shared object by its file name, `[heap]`, and the
nameless anonymous mappings: malloc arenas, large numpy arrays, the TFLite arena, thread stacks); an
anonymous part inside a named mapping is that library's written data. The two services' RSS count the
pages of the files both map (libpython, libcrypto...) twice; `total_pss_mb` counts them once. The imported
modules, per top-level package, come from `python -X importtime`, whose report goes to a file on tmpfs
(no SD writes).

Where the writes go: each service runs under `strace -f -y -e trace=write,pwrite64,...` (seccomp-filtered,
so only those calls stop the process), which names the file behind every write; the bytes are summed by
file, with temporary and content-named files folded into what they become (`.x.tmp` -> `x`). No code in
the services is instrumented for it. What /proc/<pid>/io counts beyond the traced calls is SQLite's
memory-mapped `-shm` index, and above all the page rounding of small appends: the kernel counts every 4 KiB
page a write dirties, and the outbox's fsync per commit cleans the WAL's last page, so the next commit's
append dirties (and writes) it again ("untraced"). Without strace, the per-file part is left out.
`first_writes_per_hour` is the share of the hourly figure that went to files named after their content
(a detector's or the adapter's learned reference, a new file only when that content is new) and to the
factory bundle the updater copies into a slot on a new data directory. A 90 s window from a fresh start
holds each learned reference once or twice (while and once learned), scaled to an hour like the rest; a
device writes them once per model, alarm or adaptation. A small detector value that changes at every save
(the feature-CVM window) is also content-named, so it is counted here though it is not written once.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shlex
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
FIXTURE = Path(__file__).resolve().parent / "fixtures" / "mobilenetv2"
NOT_IN_IMAGE = ("pandas", "boto3", "botocore")
SERVICES = ("run", "updater")
WRITE_CALLS = "write,pwrite64,writev,pwritev,pwritev2,sendfile,sendfile64"
TOP = 10  # mappings and packages listed per service
_MAPPING = re.compile(r"^[0-9a-f]+-[0-9a-f]+ ")
_TRACED = re.compile(r"^(\d+)\s+([\d.]+)\s+\w+\(\d+<([^>]*)>")
_RESUMED = re.compile(r"^(\d+)\s+([\d.]+)\s+<\.\.\. \w+ resumed>")
_RESULT = re.compile(r"= (\d+)$")


def image_env(tree: Path) -> dict[str, str]:
    """The `ENV` settings of `tree`'s device image (its last stage), less PATH (the venv's python is run directly)."""
    text = (tree / "device" / "Dockerfile.armv7").read_text().replace("\\\n", " ").rpartition("\nFROM ")[2]
    env: dict[str, str] = {}
    for line in text.splitlines():
        if line.startswith("ENV "):
            env.update(item.partition("=")[::2] for item in shlex.split(line[4:], comments=True) if "=" in item)
    env.pop("PATH", None)
    return env


def _fields(lines: Iterator[str] | list[str]) -> dict[str, int]:
    out = {}
    for line in lines:
        key, _, rest = line.partition(":")
        value = rest.split()
        if value and value[0].isdigit():
            out[key] = int(value[0])
    return out


def _group(path: str) -> str:
    """What a mapping is, for grouping: a file by its name (versions and ABI tags dropped), or its kind."""
    if not path:
        return "anonymous (malloc arenas, numpy arrays, TFLite arena, thread stacks)"
    if path.startswith("["):
        return path
    name = Path(path).name
    return re.sub(r"(\.cpython-[^.]+|-[0-9a-f]{8,})?(\.so)(\.[0-9.]+)?$", r"\2", name)


def memory(pid: int) -> dict[str, Any]:
    """Peak and current RSS of `pid`, anonymous vs file-backed, and the largest mappings grouped by object."""
    status = _fields(Path(f"/proc/{pid}/status").read_text().splitlines())
    rollup = _fields(Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines()[1:])
    groups: dict[str, Counter[str]] = defaultdict(Counter)
    name = ""
    for line in Path(f"/proc/{pid}/smaps").read_text().splitlines():
        if _MAPPING.match(line):
            parts = line.split(None, 5)
            name = _group(parts[5].strip() if len(parts) > 5 else "")
        elif line.startswith(("Rss:", "Anonymous:")):
            groups[name][line.split(":")[0].lower()] += int(line.split()[1])
    largest = sorted(groups.items(), key=lambda kv: -kv[1]["rss"])[:TOP]
    return {
        "peak_rss_mb": round(status["VmHWM"] / 1024, 1),
        "rss_mb": round(rollup["Rss"] / 1024, 1),
        "pss_mb": round(rollup["Pss"] / 1024, 1),
        "anonymous_mb": round(rollup["Anonymous"] / 1024, 1),
        "file_backed_mb": round((rollup["Rss"] - rollup["Anonymous"]) / 1024, 1),
        "threads": status["Threads"],
        "largest_kb": {key: {"rss": c["rss"], "anonymous": c["anonymous"]} for key, c in largest},
    }


def modules(importtime: Path) -> dict[str, Any]:
    """Modules the service imported (from `-X importtime`), and the packages with the most of them."""
    names = [line.rsplit("|", 1)[1].strip() for line in importtime.read_text(errors="replace").splitlines()
             if line.startswith("import time:") and line.count("|") == 2 and "imported package" not in line]
    packages = Counter(name.split(".")[0] for name in names)
    return {"count": len(names), "largest_packages": dict(packages.most_common(TOP))}


def _file_key(path: str, data_dir: str) -> str:
    """A written file as reported: relative to the data directory, temporary and content names folded."""
    parts = Path(path[len(data_dir) + 1 :]).parts
    name = re.sub(r"^\.(.+?)\.[^.]*\.tmp$|^\.(.+)\.tmp$", lambda m: m.group(1) or m.group(2), parts[-1])
    name = re.sub(r"\.[0-9a-f]{16}\.(\w+)$", r".<digest>.\1", name)
    if parts[0] == "blobs":
        return "blobs/*"
    if parts[0] == "state":
        return "/".join(("state", "*", *parts[2:-1], name))
    return "/".join((*parts[:-1], name))


def _written_once(key: str) -> bool:
    """A file written once for good: named after its content (a learned reference), or a bundle copied to a slot."""
    return "<digest>" in key or key.startswith("models/")


def traced_writes(trace: Path, data_dir: str, until: float) -> dict[str, int]:
    """Bytes written per file in the data directory until `until` (epoch s), from an `strace -f -ttt -y` log."""
    out: Counter[str] = Counter()
    pending: dict[str, str] = {}
    for line in trace.read_text(errors="replace").splitlines():
        if m := _TRACED.match(line):
            pid, at, path = m.groups()
            if line.endswith("<unfinished ...>"):
                pending[pid] = path
                continue
        elif m := _RESUMED.match(line):
            pid, at = m.groups()
            path = pending.pop(pid, "")
        else:
            continue
        result = _RESULT.search(line)
        if result and float(at) <= until and path.startswith(data_dir + "/"):
            out[_file_key(path, data_dir)] += int(result.group(1))
    return dict(out)


@dataclass
class Service:
    """One service process (maybe under strace) and the files its measurement reads."""

    name: str
    proc: subprocess.Popen[bytes]
    pid: int
    trace: Path | None
    importtime: Path


def _child_of(parent: int) -> int:
    """The service strace started (strace itself is `parent`; it forks helpers of its own first)."""
    for _ in range(400):
        for child in Path(f"/proc/{parent}/task/{parent}/children").read_text().split():
            try:
                argv0 = Path(f"/proc/{child}/cmdline").read_bytes().split(b"\0")[0]
            except OSError:
                continue
            if argv0 == sys.executable.encode():
                return int(child)
        time.sleep(0.05)
    raise RuntimeError("strace did not start the service")


def compose_flags(tree: Path, service: str) -> list[str]:
    """The flags `tree`'s docker-compose.yml gives `service`'s command beyond its subcommand and --config."""
    import yaml

    command = list(yaml.safe_load((tree / "docker-compose.yml").read_text())["services"][service]["command"])
    flags = command[1:]
    if "--config" in flags:
        at = flags.index("--config")
        del flags[at : at + 2]
    return [str(flag) for flag in flags]


def start(tree: Path, name: str, config: Path, scratch: Path) -> Service:
    """Start `tinylcm <name>` from `tree` with the image's environment and its compose file's flags."""
    code = (f"import sys; sys.modules.update(dict.fromkeys({NOT_IN_IMAGE!r})); "
            "from device.cli import main; sys.exit(main(sys.argv[1:]))")
    flags = compose_flags(tree, "updater" if name == "updater" else "inference")
    cmd = [sys.executable, "-X", "importtime", "-c", code, name, "--config", str(config), *flags]
    trace = scratch / f"{name}.strace" if shutil.which("strace") else None
    if trace is not None:
        cmd = ["strace", "-f", "--seccomp-bpf", "-qq", "-ttt", "-y", "-s0", "-e", f"trace={WRITE_CALLS}",
               "-o", str(trace), "--", *cmd]
    env = {**os.environ, **image_env(tree), "PYTHONPATH": str(tree)}  # as the image, and from `tree`
    importtime = scratch / f"{name}.importtime"
    with importtime.open("wb") as err:
        proc = subprocess.Popen(cmd, cwd=tree, env=env, stdout=subprocess.DEVNULL, stderr=err)
    return Service(name, proc, _child_of(proc.pid) if trace else proc.pid, trace, importtime)


def _frames(data_dir: Path) -> int | None:
    """Predictions the inference service recorded (none is delivered: there is no server)."""
    try:
        with sqlite3.connect(f"file:{data_dir / 'outbox.db'}?mode=ro", uri=True) as conn:
            return int(conn.execute("SELECT count(*) FROM records WHERE kind = 'prediction'").fetchone()[0])
    except sqlite3.Error:
        return None


def device_config(work: Path, fps: float, bundle: Path | None, commit_s: float | None = None,
                  server_url: str | None = None, health_port: int = 0,
                  updater: dict[str, Any] | None = None) -> dict[str, Any]:
    """The services' configuration: data in `work`, the synthetic camera at `fps`, `bundle`'s model (None: the
    bundle `models/current` points to, as the image); with `server_url` the inference service syncs (its sync
    client loaded and retrying, whether or not it answers); `updater`: the config's `updater` section."""
    return {
        "device": {"data_dir": str(work), "health_port": health_port},
        "camera": {"source": "digits", "fps": fps, "realtime": True},
        **({"feature_extractor": {"bundle": str(bundle)}} if bundle is not None else {}),
        "outbox": {} if commit_s is None else {"commit_interval_s": commit_s},
        **({"sync": {"server_url": server_url}} if server_url else {}),
        **({"updater": updater} if updater else {}),
    }


class Pair:
    """The two services of one source tree, sharing one data directory."""

    def __init__(self, tree: Path, work: Path, scratch: Path, fps: float, bundle: Path | None,
                 commit_s: float | None, server_url: str | None = None, health_port: int = 0,
                 updater: dict[str, Any] | None = None):
        self.tree, self.data, self.env = tree, work, image_env(tree)
        scratch.mkdir()
        self.scratch = scratch
        config = work / "device.json"
        config.write_text(json.dumps(device_config(work, fps, bundle, commit_s, server_url, health_port, updater)))
        self.services = [start(tree, name, config, scratch) for name in SERVICES]
        self.samples: dict[str, dict[str, Any]] = {}
        self.sampled_at = 0.0

    def sample(self) -> None:
        self.sampled_at = time.time()
        for s in self.services:
            if not Path(f"/proc/{s.pid}").exists():
                log = [line for line in s.importtime.read_text().splitlines() if not line.startswith("import time:")]
                raise RuntimeError(f"{s.name} of {self.tree} ended early: " + "\n".join(log[-20:]))
            io = _fields(Path(f"/proc/{s.pid}/io").read_text().splitlines())
            self.samples[s.name] = {"memory": memory(s.pid), "write_bytes": io["write_bytes"]}

    def stop(self) -> dict[str, int]:
        """SIGTERM to each service; their exit codes."""
        for s in self.services:
            if s.proc.poll() is None:
                os.kill(s.pid, signal.SIGTERM)
        return {s.name: s.proc.wait(timeout=60) for s in self.services}

    def report(self, seconds: float, codes: dict[str, int]) -> dict[str, Any]:
        per_hour = 3600.0 / seconds
        out: dict[str, Any] = {"image_env": self.env}
        total_peak, total_pss, total_written, once = 0.0, 0.0, 0, 0
        for s in self.services:
            sample = self.samples[s.name]
            written = sample["write_bytes"]
            entry: dict[str, Any] = {**sample["memory"], "sd_write_bytes_per_hour": int(written * per_hour)}
            if s.trace is not None:
                files = traced_writes(s.trace, str(self.data), self.sampled_at)
                traced = sum(files.values())
                once += sum(v for k, v in files.items() if _written_once(k))
                ranked = sorted(files.items(), key=lambda kv: -kv[1])
                entry["writes_per_hour_by_file"] = {k: int(v * per_hour) for k, v in ranked}
                entry["writes_per_hour_untraced"] = int(max(written - traced, 0) * per_hour)
            entry["modules"] = modules(s.importtime)
            entry["exit_code"] = codes[s.name]
            out[s.name] = entry
            total_peak += sample["memory"]["peak_rss_mb"]
            total_pss += sample["memory"]["pss_mb"]
            total_written += written
        out["frames_recorded"] = _frames(self.data)
        out["total_peak_rss_mb"] = round(total_peak, 1)
        out["total_pss_mb"] = round(total_pss, 1)  # at the end; each shared page counted once across both
        out["sd_write_bytes_per_hour"] = int(total_written * per_hour)
        out["first_writes_per_hour"] = int(once * per_hour)
        out["outbox_bytes_per_hour"] = int(
            sum(p.stat().st_size for p in self.data.rglob("outbox*") if p.is_file()) * per_hour)
        return out


# -- the update scenario (--update) --------------------------------------------------------------------------
LIMIT_MB = 120.0  # issue 17: inference + updater under this on a 512 MB board
UPDATE_VERSION = "1.0.1"  # the fixture is 1.0.0
AFTER_ROUND = ("SWITCHED", "PROBATION", "COMMITTED", "ROLLED_BACK")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _rss_kb(pid: int, field: str = "VmRSS") -> int:
    try:
        return _fields(Path(f"/proc/{pid}/status").read_text().splitlines()).get(field, 0)
    except OSError:
        return 0


def _descendants(pid: int) -> list[int]:
    """The processes `pid` started, and theirs (the updater's smoke test)."""
    out: list[int] = []
    try:
        tasks = list(Path(f"/proc/{pid}/task").iterdir())
    except OSError:
        return out
    for task in tasks:
        try:
            children = [int(c) for c in (task / "children").read_text().split()]
        except OSError:
            continue
        for child in children:
            out += [child, *_descendants(child)]
    return out


def _journal(data_dir: Path) -> dict[str, Any]:
    try:
        data = json.loads((data_dir / "state" / "updater.json").read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


class Sampler(threading.Thread):
    """Every `interval_s`: the RSS of each pair's two services, the peak RSS so far (VmHWM) of the processes they
    started (the updater's smoke test: short-lived, its peak would fall between two samples), and the updater's
    journal state. Reads /proc only; the services are not touched."""

    def __init__(self, pairs: dict[str, Pair], interval_s: float = 0.1) -> None:
        super().__init__(daemon=True)
        self.pairs, self.interval_s = pairs, interval_s
        self.rows: dict[str, list[tuple[float, int, int, int, str]]] = {label: [] for label in pairs}
        self.done = threading.Event()

    def run(self) -> None:
        while not self.done.wait(self.interval_s):
            now = time.time()
            for label, pair in self.pairs.items():
                run, updater = (s.pid for s in pair.services)
                children = sum(_rss_kb(c, "VmHWM") for pid in (run, updater) for c in _descendants(pid))
                state = str(_journal(pair.data).get("state", ""))
                self.rows[label].append((now, _rss_kb(run), _rss_kb(updater), children, state))


def _phase(rows: list[tuple[float, int, int, int, str]], interval_s: float) -> dict[str, Any]:
    """Peaks of one phase: each service, their sum, the sum with the processes they started; time over the limit."""
    if not rows:
        return {"seconds": 0.0}
    limit_kb = LIMIT_MB * 1024

    def mb(kb: float) -> float:
        return round(kb / 1024, 1)

    sums = [r[1] + r[2] for r in rows]
    with_children = [r[1] + r[2] + r[3] for r in rows]
    return {
        "seconds": round(rows[-1][0] - rows[0][0] + interval_s, 1),
        "run_peak_mb": mb(max(r[1] for r in rows)),
        "updater_peak_mb": mb(max(r[2] for r in rows)),
        "children_peak_mb": mb(max(r[3] for r in rows)),
        "max_sum_mb": mb(max(sums)),
        "max_sum_with_children_mb": mb(max(with_children)),
        "seconds_sum_over_limit": round(interval_s * sum(v > limit_kb for v in sums), 1),
        "seconds_with_children_over_limit": round(interval_s * sum(v > limit_kb for v in with_children), 1),
        "sum_at_end_mb": mb(sums[-1]),
    }


def update_timeline(rows: list[tuple[float, int, int, int, str]], desired_at: float,
                    interval_s: float) -> dict[str, Any]:
    """The samples in phases: before the desired bundle is written, the round (until the journal leaves
    DOWNLOADING/STAGED for the switch), probation (until COMMITTED or ROLLED_BACK), after."""
    switched = next((r[0] for r in rows if r[0] >= desired_at and r[4] in AFTER_ROUND), None)
    ended = next((r[0] for r in rows if r[0] >= desired_at and r[4] in ("COMMITTED", "ROLLED_BACK")), None)
    inf = float("inf")
    bounds = {"before": (-inf, desired_at), "round": (desired_at, switched or inf),
              "probation": (switched or inf, ended or inf), "after": (ended or inf, inf)}
    out = {name: _phase([r for r in rows if lo <= r[0] < hi], interval_s) for name, (lo, hi) in bounds.items()}
    out["whole"] = _phase(rows, interval_s)
    return out


def publish_update(bundle: Path, work: Path) -> tuple[Any, str, Path]:
    """A signed TUF repository (as the updater tests build it) with a kNN-only update of `bundle`: the repository,
    the target and the new bundle directory."""
    from tests.device.updater.fakes import knn_variant
    from tests.device.updater.tuf_server import TufRepo, add_bundle

    new = knn_variant(work, UPDATE_VERSION, source=bundle)
    model = json.loads((new / "bundle.json").read_text())["name"]
    repo = TufRepo()
    target = f"{model}/{UPDATE_VERSION}/bundle.tar"
    add_bundle(repo, target, new)
    repo.publish()
    return repo, target, new


def prepare_device(data_dir: Path, repo: Any, bundle: Path) -> None:
    """A provisioned, enrolled device (pinned TUF root, identity) running `bundle` from slot-a."""
    from device.updater.slots import Slots
    from tests.device.updater.fakes import make_device

    make_device(data_dir, repo)
    Slots(data_dir / "models").ensure(bundle)


@contextmanager
def worktree(ref: str) -> Iterator[Path]:
    """A detached `git worktree` of `ref`, removed afterwards."""
    with tempfile.TemporaryDirectory(prefix="tinylcm-baseline-") as tmp:
        path = Path(tmp) / "tree"
        subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", "--quiet", str(path), ref], check=True)
        try:
            yield path
        finally:
            subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(path)], check=False)


def run(seconds: float, fps: float, bundle: Path, commit_s: float | None = None,
        baseline: str | None = None, server_url: str | None = None, update_at: float | None = None,
        probation_s: float = 20.0) -> dict[str, Any]:
    """Run the current tree's services (and `baseline`'s beside them) for `seconds`; the measured figures.
    `update_at`: the update scenario, its bundle desired that many seconds into the window."""
    with ExitStack() as stack:
        work = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="tinylcm-bench-")))
        scratch = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="tinylcm-bench-", dir="/dev/shm")))
        trees = {"current": ROOT}
        if baseline is not None:
            trees[f"baseline ({baseline})"] = stack.enter_context(worktree(baseline))
        update: dict[str, Any] = {}
        if update_at is not None:
            from tests.device.updater.tuf_server import Mirror

            repo, target, _ = publish_update(bundle, work)
            mirror = stack.enter_context(Mirror(repo))
            update = {"target": target, "version": UPDATE_VERSION, "kind": "kNN-only (knn_state.npz, bundle.json)",
                      "desired_at_s": update_at, "probation_s": probation_s, "limit_mb": LIMIT_MB}
        load_before = os.getloadavg()
        pairs: dict[str, Pair] = {}
        sampler: Sampler | None = None
        desired_at = float("inf")
        try:
            for label, tree in trees.items():
                data = work / str(len(pairs))
                data.mkdir()
                if update:
                    prepare_device(data, repo, bundle)
                    section = {"server_url": mirror.url, "device_type": "raspberrypi0-2w-64",
                               "probation_s": probation_s}
                    pairs[label] = Pair(tree, data, scratch / str(len(pairs)), fps, None, commit_s, server_url,
                                        _free_port(), section)
                else:
                    pairs[label] = Pair(tree, data, scratch / str(len(pairs)), fps, bundle, commit_s, server_url)
            started = time.time()
            if update:
                sampler = Sampler(pairs)
                sampler.start()
                time.sleep(update_at)
                from tests.device.updater.fakes import desire

                desired_at = time.time()
                model = target.split("/")[0]
                for pair in pairs.values():
                    desire(pair.data, target, UPDATE_VERSION, model)
            time.sleep(max(0.0, seconds - (time.time() - started)))
            for pair in pairs.values():
                pair.sample()
            load_after = os.getloadavg()
        finally:
            if sampler is not None:
                sampler.done.set()
                sampler.join()
            codes = {label: pair.stop() for label, pair in pairs.items()}
        reports = {label: pair.report(seconds, codes[label]) for label, pair in pairs.items()}
        if sampler is not None:
            for label, pair in pairs.items():
                journal = _journal(pair.data)
                log = next(s.importtime for s in pair.services if s.name == "updater").read_text(errors="replace")
                reports[label]["update"] = {
                    "flags": compose_flags(pair.tree, "updater"),
                    "state": journal.get("state"), "live_version": journal.get("live_version"),
                    "reexecs": log.count("re-executing to give the TUF client"),
                    "transitions": [f"{h.get('at', '')[11:19]} {h.get('to')}: {str(h.get('reason'))[:80]}"
                                    for h in journal.get("history", [])],
                    "last_reason": str(journal.get("reason"))[:200],
                    **update_timeline(sampler.rows[label], desired_at, sampler.interval_s)}
        result = {
            "model": bundle.name,
            "seconds": seconds,
            "fps": fps,
            "server_url": server_url,
            "load_average_1m": {"start": round(load_before[0], 2), "end": round(load_after[0], 2)},
            **({"update": update} if update else {}),
            **reports,
            "note": "x86-64 with ai-edge-litert; pandas and boto3 blocked as in the device image",
        }
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=90.0, help="how long both services run")
    parser.add_argument("--fps", type=float, default=5.0, help="camera frame rate of the inference service")
    parser.add_argument("--bundle", type=Path, default=FIXTURE)
    parser.add_argument("--commit-s", type=float, help="outbox.commit_interval_s (default: the shipped one)")
    parser.add_argument("--baseline", metavar="REF", help="also run this git ref's services, side by side")
    parser.add_argument("--server-url", help="the inference services sync with this server (default: none, so "
                        "they wait to be provisioned); a closed port such as http://127.0.0.1:9 loads and runs the "
                        "whole sync client against a server that never answers")
    parser.add_argument("--update", action="store_true", help="the update scenario: a signed repository on loopback "
                        "offers a kNN-only update of the bundle, desired --update-at seconds into the window")
    parser.add_argument("--update-at", type=float, default=30.0, help="when the update is desired (--update)")
    parser.add_argument("--probation-s", type=float, default=20.0, help="updater.probation_s (--update)")
    parser.add_argument("--json", action="store_true", help="print JSON on one line (default: indented)")
    args = parser.parse_args()
    result = run(args.seconds, args.fps, args.bundle.resolve(), args.commit_s, args.baseline, args.server_url,
                 args.update_at if args.update else None, args.probation_s)
    print(json.dumps(result, indent=None if args.json else 2))


if __name__ == "__main__":
    main()
