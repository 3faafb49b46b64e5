"""`AgentFleet.drain`: waits as long as the fleet's backlog keeps shrinking, gives up on a stall.

The agents here are stand-ins holding only what drain reads and calls (an outbox depth and a sync
trigger); the real agents drain against the real server in tests/e2e/test_simulator.py.
"""

from __future__ import annotations

import time
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


def fleet_of(*backlogs: Backlog) -> AgentFleet:
    fleet = AgentFleet([], FleetSpec(devices=len(backlogs), duration_s=1))
    agents: list[Any] = [SimpleNamespace(app=SimpleNamespace(outbox=b, sync=b)) for b in backlogs]
    fleet.agents = agents
    return fleet


def test_a_slow_drain_is_waited_for_past_the_stall_time() -> None:
    backlogs = [Backlog(3), Backlog(1)]
    began = time.monotonic()
    assert fleet_of(*backlogs).drain(stall_s=2.5) is True
    assert time.monotonic() - began > 2.5  # took longer than one stall period, and still counted as drained
    assert [b.rows for b in backlogs] == [0, 0]
    assert backlogs[1].triggers == 1  # an empty outbox is not nudged again


def test_a_drain_that_stops_moving_gives_up() -> None:
    stuck = Backlog(5, floor=4)
    began = time.monotonic()
    assert fleet_of(stuck, Backlog(0)).drain(stall_s=1.0) is False
    assert 1.0 < time.monotonic() - began < 8.0
    assert stuck.rows == 4


def test_the_cap_bounds_a_drain_that_crawls() -> None:
    assert fleet_of(Backlog(1000)).drain(stall_s=5.0, cap_s=3.0) is False
