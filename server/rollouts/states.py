"""Rollout states, the one table of moves between them, and the states of a rollout's devices.

The values are what the database stores (`rollouts.state`, `rollout_devices.state`).
"""

from __future__ import annotations

import enum

from server.errors import ConflictError


class RolloutState(enum.StrEnum):
    running = "running"  # the controller assigns and evaluates wave by wave
    paused = "paused"  # by an operator, or after an automatic rollback
    completed = "completed"  # every wave passed its gates
    aborted = "aborted"  # ended by an operator; its devices were sent back


# Every move a rollout may make; a rollout starts `running`, and a state with no moves is final.
ALLOWED: dict[RolloutState, frozenset[RolloutState]] = {
    RolloutState.running: frozenset({RolloutState.paused, RolloutState.completed, RolloutState.aborted}),
    RolloutState.paused: frozenset({RolloutState.running, RolloutState.aborted}),
    RolloutState.completed: frozenset(),
    RolloutState.aborted: frozenset(),
}
FINAL = frozenset(state for state, moves in ALLOWED.items() if not moves)
LIVE = frozenset(RolloutState) - FINAL


def allows(current: str, new: RolloutState) -> bool:
    """Whether a rollout in state `current` may move to `new`."""
    return new in ALLOWED[RolloutState(current)]


def transition(current: str, new: RolloutState, subject: str = "the rollout") -> str:
    """The value to store for a move from `current` to `new`; a `ConflictError` if the table forbids it.

    The error names the one state the move starts from, or, when several could, says where `subject` already is."""
    if allows(current, new):
        return new.value
    sources = [state for state, moves in ALLOWED.items() if new in moves]
    if len(sources) == 1:
        raise ConflictError(f"{subject} is {current}, not {sources[0]}")
    raise ConflictError(f"{subject} is already {current}")


class DeviceState(enum.StrEnum):
    """Where one device of a rollout stands, in the order a wave moves through them."""

    waiting = "waiting"  # its wave has not started
    assigned = "assigned"  # told to fetch the bundle
    updating = "updating"  # downloading, staged, switched or on probation
    updated = "updated"  # runs the bundle
    failed = "failed"  # rolled the bundle back itself
    rolled_back = "rolled_back"  # sent back to its previous bundle by the rollout


# Devices the rollout has touched: they go back to their previous bundle on rollback or abort.
TOUCHED = (DeviceState.assigned, DeviceState.updating, DeviceState.updated, DeviceState.failed)
