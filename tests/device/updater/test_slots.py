"""A/B slots: factory install, atomic flip, the live slot is never overwritten."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from device.errors import SlotError
from device.updater.slots import Slots
from tests.utils.bundles import FACTORY


def test_first_start_installs_the_factory_bundle(tmp_path: Path) -> None:
    slots = Slots(tmp_path / "models")
    assert slots.ensure(FACTORY) == "slot-a"
    assert os.readlink(slots.current) == "slot-a" and (slots.current / "model.tflite").is_file()
    assert slots.inactive() == "slot-b"
    assert slots.ensure(FACTORY) == "slot-a"  # idempotent


def test_flip_replaces_the_link_and_cleans_up(tmp_path: Path) -> None:
    slots = Slots(tmp_path / "models")
    slots.ensure(FACTORY)
    (slots.clear_staging() / "f").write_text("x")
    slots.install_staging("slot-b")
    slots.flip("slot-b")
    assert slots.live() == "slot-b" and (slots.current / "f").read_text() == "x"
    os.symlink("slot-a", slots.root / ".current.999.tmp")  # left by a power loss mid-flip
    slots.tidy()
    assert sorted(p.name for p in slots.root.iterdir()) == ["current", "slot-a", "slot-b"]


def test_live_slot_is_never_overwritten(tmp_path: Path) -> None:
    slots = Slots(tmp_path / "models")
    slots.ensure(FACTORY)
    slots.clear_staging()
    with pytest.raises(SlotError, match="live slot"):
        slots.install_staging("slot-a")
    with pytest.raises(SlotError):
        slots.flip("elsewhere")


def test_current_must_be_a_link_to_a_slot(tmp_path: Path) -> None:
    slots = Slots(tmp_path / "models")
    slots.root.mkdir()
    os.symlink("/tmp", slots.current)
    with pytest.raises(SlotError, match="not to a slot"):
        slots.live()
    slots.current.unlink()
    slots.current.mkdir()
    with pytest.raises(SlotError, match="not a symlink"):
        slots.live()
