"""`wait_until`: poll a predicate until it returns something truthy, failing with what was awaited."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def wait_until(predicate: Callable[[], T | None], timeout: float, what: str, interval: float = 0.1,
               ignore: tuple[type[Exception], ...] = ()) -> T:
    """Call `predicate` every `interval` seconds until it returns a truthy value, and return that value.

    Exceptions of the types in `ignore` count as a falsy answer (e.g. `OSError` while a server starts);
    any other exception propagates at once. After `timeout` seconds it raises `AssertionError` naming
    `what` and the last value or ignored exception seen.
    """
    deadline = time.monotonic() + timeout
    while True:
        last: object
        try:
            value = predicate()
        except ignore as error:
            last = error
        else:
            if value:
                return value
            last = value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what} (last seen: {last!r})")
        time.sleep(interval)
