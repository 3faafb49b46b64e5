"""The rollout state table: every allowed move is taken, every other one refused with a conflict."""

from __future__ import annotations

import pytest

from server.errors import ConflictError
from server.rollouts.states import ALLOWED, FINAL, LIVE, RolloutState, allows, transition

MOVES = [(current, new) for current, moves in ALLOWED.items() for new in sorted(moves)]
FORBIDDEN = [(current, new) for current in RolloutState for new in RolloutState if new not in ALLOWED[current]]


def test_the_table_has_every_state_and_the_moves_the_lifecycle_makes() -> None:
    assert set(ALLOWED) == set(RolloutState)
    assert MOVES == [("running", "aborted"), ("running", "completed"), ("running", "paused"),
                     ("paused", "aborted"), ("paused", "running")]
    assert {state.value for state in FINAL} == {"completed", "aborted"}
    assert {state.value for state in LIVE} == {"running", "paused"}


def test_the_stored_values_are_unchanged() -> None:
    assert [state.value for state in RolloutState] == ["running", "paused", "completed", "aborted"]


@pytest.mark.parametrize(("current", "new"), MOVES)
def test_an_allowed_move_answers_the_value_to_store(current: RolloutState, new: RolloutState) -> None:
    assert allows(current.value, new)
    stored = transition(current.value, new)
    assert stored == new.value and type(stored) is str


@pytest.mark.parametrize(("current", "new"), FORBIDDEN)
def test_a_forbidden_move_is_a_conflict(current: RolloutState, new: RolloutState) -> None:
    assert not allows(current.value, new)
    with pytest.raises(ConflictError):
        transition(current.value, new)


@pytest.mark.parametrize(("current", "new", "message"), [
    ("paused", RolloutState.paused, "rollout 7 is paused, not running"),
    ("completed", RolloutState.running, "rollout 7 is completed, not paused"),
    ("aborted", RolloutState.aborted, "rollout 7 is already aborted"),
])
def test_a_refusal_says_why(current: str, new: RolloutState, message: str) -> None:
    with pytest.raises(ConflictError, match=f"^{message}$"):
        transition(current, new, "rollout 7")
