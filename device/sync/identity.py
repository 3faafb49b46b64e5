"""The device's identity on the server (device id + secret), obtained once by enrollment and kept on disk."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from device.errors import StateError
from device.state import write_bytes_atomic


@dataclass(frozen=True)
class Identity:
    device_id: str
    secret: str


def load_identity(path: Path) -> Identity | None:
    """The stored identity, None when the device has not enrolled yet."""
    try:
        data = json.loads(path.read_text())
        return Identity(str(data["device_id"]), str(data["secret"]))
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise StateError(f"unreadable device identity: {exc}", path) from exc


def save_identity(path: Path, identity: Identity) -> None:
    """Store the identity atomically, readable by the owner only."""
    write_bytes_atomic(path, json.dumps({"device_id": identity.device_id, "secret": identity.secret}).encode())
    os.chmod(path, 0o600)
