"""Ed25519 signing keys as PEM (PKCS#8) files: generated offline, written 0600, loaded as signers."""

from __future__ import annotations

import os
from pathlib import Path
from typing import IO

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import load_pem_private_key
from securesystemslib.signer import CryptoSigner, SSlibKey

from contract import atomic
from server.errors import InputError


def generate() -> CryptoSigner:
    """A fresh ed25519 signer; its key id is derived from the public key."""
    return CryptoSigner.generate_ed25519()


def from_pem(pem: bytes, where: str = "key") -> CryptoSigner:
    """A signer from PEM bytes; `InputError` naming `where` if they are not an ed25519 private key."""
    try:
        private = load_pem_private_key(pem, None)
    except (ValueError, TypeError) as exc:
        raise InputError(f"{where} is not a PEM private key: {exc}") from exc
    if not isinstance(private, Ed25519PrivateKey):
        raise InputError(f"{where} is not an ed25519 key")
    return CryptoSigner(private, SSlibKey.from_crypto(private.public_key(), scheme="ed25519"))


def load(path: Path) -> CryptoSigner:
    """A signer from a key file."""
    try:
        return from_pem(path.read_bytes(), str(path))
    except OSError as exc:
        raise InputError(f"cannot read key {path}: {exc}") from exc


def write_private(path: Path, signer: CryptoSigner) -> None:
    """Write a private key readable by its owner only, atomically; never overwrites an existing key."""
    if path.exists():
        raise InputError(f"{path} exists; refusing to overwrite a key")
    write_atomic(path, signer.private_bytes, mode=0o600)


def write_atomic(path: Path, data: bytes, mode: int = 0o644) -> None:
    """Write `data` atomically with `mode` set before the first byte (private keys are never readable)."""

    def write(out: IO[bytes]) -> None:
        os.fchmod(out.fileno(), mode)
        out.write(data)

    atomic.write_atomic(path, write)
