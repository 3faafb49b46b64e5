"""Fixtures of the adapter tests: a seeded world, an adapter on it, and the standard drifting stream."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import pytest

from device.adapt import Adapter
from tests.device.adapt.worlds import CONFIG, DRIFT, World, true_class


@pytest.fixture
def world() -> World:
    return World(seed=0)


@pytest.fixture
def adapter(world: World) -> Adapter:
    return Adapter(world.knn, CONFIG, clock=lambda: 1000.0)


Stream = Callable[..., dict[int, list[dict[str, Any]]]]


@pytest.fixture
def stream(world: World, adapter: Adapter) -> Stream:
    """Feed frames `seqs` of the standard drift to `adapter`; returns {seq: events} where there were events."""

    def feed(seqs: Iterable[int], drifting: bool = True) -> dict[int, list[dict[str, Any]]]:
        out = {}
        for seq in seqs:
            events = adapter.observe(world.result(seq, true_class(seq)), drifting=drifting and seq >= DRIFT)
            if events:
                out[seq] = events
        return out

    return feed
