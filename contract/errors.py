"""Errors the contract raises; `path` names the file at fault.

`ContractError` is also the root of the device's error hierarchy (`device.errors.TinyLCMError`), so a bundle
the contract refuses is reported by the device like any other error of its own.
"""

from __future__ import annotations

from pathlib import Path


class ContractError(Exception):
    """Root of every error raised on purpose by the contract; `path` names the file at fault."""

    def __init__(self, message: str, path: str | Path | None = None) -> None:
        self.message = message
        self.path = str(path) if path is not None else None
        super().__init__(f"{self.path}: {message}" if self.path else message)


class BundleError(ContractError):
    """A model bundle is missing a file, is corrupt, or does not match its model."""
