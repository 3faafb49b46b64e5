"""`AgentFleet.drain`: waits as long as the fleet's backlog keeps shrinking, gives up on a stall.

The agents here are stand-ins holding only what drain reads and calls (an outbox depth and a sync
trigger), and drain runs on a fake clock that its sleeps advance; the real agents drain against the
real server in tests/e2e/test_simulator.py.
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from simulator.agents import AgentFleet
from simulator.spec import FleetSpec


class Backlog:
    """An outbox whose depth falls by one each time its sync is triggered, down to `floor`."""

    def __init__(self, depth: int, floor: int = 0) -> None:
        self.rows, self.floor, self.triggers = depth, floor, 0

    def depth(self) -> int:
        return self.rows

    def flush(self, timeout: float | None = None) -> bool:
        return True

    def trigger(self) -> None:
        self.triggers += 1
        self.rows = max(self.floor, self.rows - 1)


class FakeClock:
    """A clock that only its `sleep` moves forward."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


def drain(backlogs: list[Backlog], stall_s: float, cap_s: float | None = None) -> tuple[bool, float]:
    """Drain a fleet holding `backlogs`; whether it drained, and how long it took on the fake clock."""
    fleet = AgentFleet([], FleetSpec(devices=len(backlogs), duration_s=1))
    agents: list[Any] = [SimpleNamespace(app=SimpleNamespace(outbox=b, connection=SimpleNamespace(sync=b)))
                         for b in backlogs]
    fleet.agents = agents
    clock = FakeClock()
    drained = fleet.drain(stall_s, cap_s, clock=clock, sleep=clock.sleep)
    return drained, clock.now


def test_a_slow_drain_is_waited_for_past_the_stall_time() -> None:
    backlogs = [Backlog(3), Backlog(1)]
    # Nudged at 0, 2 and 4 s, the backlog shrinks 4 -> 2 -> 1 -> 0: never still for 2.5 s, empty at 4.5 s.
    assert drain(backlogs, stall_s=2.5) == (True, 4.5)
    assert [b.rows for b in backlogs] == [0, 0]
    assert [b.triggers for b in backlogs] == [3, 1]  # an empty outbox is not nudged again


def test_a_drain_that_stops_moving_gives_up() -> None:
    stuck = Backlog(5, floor=4)
    # Down to 4 by the first nudge, seen at 0.5 s; no smaller by 2.0 s, more than the 1 s stall: given up.
    assert drain([stuck, Backlog(0)], stall_s=1.0) == (False, 2.0)
    assert stuck.rows == 4 and stuck.triggers == 1


def test_the_cap_bounds_a_drain_that_crawls() -> None:
    crawling = Backlog(1000)
    assert drain([crawling], stall_s=5.0, cap_s=3.0) == (False, 3.0)
    assert crawling.triggers == 2  # nudged at 0 and 2 s


def test_the_cap_defaults_to_ten_stall_periods() -> None:
    crawling = Backlog(1000)
    assert drain([crawling], stall_s=2.5) == (False, 25.0)
    assert crawling.triggers == 13  # every 2 s from 0 to 24 s, each a step down: never a stall
