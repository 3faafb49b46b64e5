"""The factory bundle baked into the package (and the image). The bundle format itself is `contract.bundle`."""

from __future__ import annotations

from importlib import resources
from pathlib import Path


def factory_bundle() -> Path:
    """The bundle baked into the package (and the image): digits 0-5."""
    return Path(str(resources.files("device") / "models" / "digits"))
