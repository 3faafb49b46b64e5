"""The device's identity on the server (device id + secret), obtained once by enrollment and kept on disk."""

from __future__ import annotations

import json
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

from contract.atomic import write_bytes_atomic
from device.errors import StateError


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


def attempt_key(identity_path: Path) -> str:
    """The key this device sends with every enrollment attempt, made and stored before the first one.

    If the device loses power after the server spent its token but before the identity reached the
    disk, the next attempt sends the same token with the same key, and the server hands the device
    its id again (with a fresh secret) instead of refusing a spent token: the device is not bricked."""
    path = identity_path.with_name("enrollment_attempt.key")
    try:
        return path.read_text().strip()
    except FileNotFoundError:
        key = secrets.token_urlsafe(32)
        write_bytes_atomic(path, key.encode())
        os.chmod(path, 0o600)
        return key
