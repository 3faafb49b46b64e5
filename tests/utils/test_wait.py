"""`wait_until`: returns the predicate's first truthy value, times out naming what it waited for."""

from __future__ import annotations

import pytest

from tests.utils.wait import wait_until


def test_returns_the_first_truthy_value() -> None:
    answers = iter([None, 0, "", {"ready": True}])
    assert wait_until(lambda: next(answers), 5, "the third poll", interval=0) == {"ready": True}


def test_times_out_naming_what_and_the_last_value() -> None:
    with pytest.raises(AssertionError, match=r"timed out after 0.05s waiting for nothing \(last seen: \[\]\)"):
        wait_until(list, 0.05, "nothing", interval=0.01)


def test_ignored_exceptions_count_as_not_yet_others_propagate() -> None:
    attempts: list[int] = []

    def flaky() -> int:
        attempts.append(1)
        if len(attempts) < 3:
            raise OSError("refused")
        return len(attempts)

    assert wait_until(flaky, 5, "a connection", interval=0, ignore=(OSError,)) == 3
    with pytest.raises(AssertionError, match=r"waiting for a connection \(last seen: OSError\('refused'\)\)"):
        wait_until(lambda: flaky() and _raise(OSError("refused")), 0.05, "a connection", interval=0.01,
                   ignore=(OSError,))
    with pytest.raises(ValueError, match="bad"):
        wait_until(lambda: _raise(ValueError("bad")), 5, "never", ignore=(OSError,))


def _raise(error: Exception) -> int:
    raise error
