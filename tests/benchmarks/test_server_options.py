"""The server benchmark's options and its CPU-per-heartbeat figure."""

import subprocess
import sys
import time

import pytest

from benchmarks.server import _cpu_s, main


def test_cpu_seconds_count_what_the_process_spent_not_the_wall_clock() -> None:
    work = ("import sys, time\nsys.stdin.readline()\nend = time.process_time() + 0.5\n"
            "while time.process_time() < end: pass\nprint('done', flush=True)\ntime.sleep(0.5)")
    busy = subprocess.Popen([sys.executable, "-c", work], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert busy.stdin is not None and busy.stdout is not None
    try:
        time.sleep(0.3)  # started and waiting: asleep, spending nothing
        began = _cpu_s(busy.pid)
        busy.stdin.write("go\n")
        busy.stdin.flush()
        assert busy.stdout.readline() == "done\n"
        spent = _cpu_s(busy.pid) - began
        assert 0.49 <= spent <= 0.8, spent
    finally:
        busy.kill()
        busy.wait()


@pytest.mark.parametrize("only", ["both", "HEARTBEAT", ""])
def test_only_takes_one_half_by_name(only: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["--only", only])
    assert exit_.value.code == 2 and "invalid choice" in capsys.readouterr().err
