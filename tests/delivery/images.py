"""Small disk images shaped like Raspberry Pi OS and balenaOS ones (MBR, FAT boot partition, root
partition), and a self-signed TUF root, for the flashing and provisioning tests."""

from __future__ import annotations

import json
import random
import struct
from datetime import UTC, datetime, timedelta
from pathlib import Path

from pyfatfs.PyFat import PyFat
from pyfatfs.PyFatFS import PyFatFS

SECTOR = 512
BOOT_START = 2048 * SECTOR  # 1 MiB, like the real images' alignment
RASPIOS_CMDLINE = ("console=serial0,115200 console=tty1 root=PARTUUID=4e639091-02 rootfstype=ext4 "
                   "fsck.repair=yes rootwait quiet init=/usr/lib/raspberrypi-sys-mods/firstboot\n")
BALENA_CONFIG = {"deviceType": "raspberrypi3", "persistentLogging": False, "hostname": "balena"}


def boot_files(flavour: str) -> dict[str, bytes]:
    """What the boot partition holds before flashing (a small sample of it)."""
    if flavour == "raspios":
        return {"/cmdline.txt": RASPIOS_CMDLINE.encode(), "/config.txt": b"dtparam=audio=on\ncamera_auto_detect=1\n",
                "/kernel7.img": bytes(range(256)) * 16, "/overlays/README": b"overlays\n"}
    if flavour == "balenaos":
        return {"/config.json": json.dumps(BALENA_CONFIG).encode(), "/config.txt": b"camera_auto_detect=1\n",
                "/balena-image": b"balena-image\n", "/device-type.json": b'{"slug": "raspberrypi3"}\n',
                "/system-connections/README.ignore": b"NetworkManager files go here\n"}
    return {"/readme.txt": b"some other FAT volume\n"}


def fat_volume(path: Path, size: int, files: dict[str, bytes]) -> bytes:
    """A FAT16 file system of `size` bytes holding `files`."""
    path.write_bytes(b"")
    fat = PyFat()
    fat.mkfs(str(path), fat_type=PyFat.FAT_TYPE_FAT16, size=size, label="bootfs")
    fat.close()
    fs = PyFatFS(str(path), utc=True)
    for name, content in files.items():
        fs.makedirs(str(Path(name).parent), recreate=True)
        fs.writebytes(name, content)
    fs.close()
    return path.read_bytes()


def mbr(partitions: list[tuple[int, int, int]]) -> bytes:
    """An MBR with (type, start byte, size bytes) primary partitions."""
    table = bytearray(SECTOR)
    struct.pack_into("<I", table, 440, 0x4E639091)  # disk signature, as in PARTUUID above
    for n, (kind, start, size) in enumerate(partitions):
        entry = 446 + 16 * n
        table[entry + 4] = kind
        struct.pack_into("<II", table, entry + 8, start // SECTOR, size // SECTOR)
    table[510:512] = b"\x55\xaa"
    return bytes(table)


def build_image(path: Path, flavour: str = "raspios", boot_kind: int = 0x0C, fat: bool = True,
                boot_size: int = 8 << 20, root_size: int = 2 << 20, seed: int = 7) -> Path:
    """A disk image at `path`: MBR, boot partition (FAT unless `fat` is False), a root partition of noise."""
    if fat:
        volume = fat_volume(path.with_suffix(".fat"), boot_size, boot_files(flavour))
        path.with_suffix(".fat").unlink()
    else:
        volume = b"\x00" * boot_size
    root_start = BOOT_START + boot_size
    noise = random.Random(seed).randbytes(root_size)
    with path.open("wb") as f:
        f.write(mbr([(boot_kind, BOOT_START, boot_size), (0x83, root_start, root_size)]))
        f.seek(BOOT_START)
        f.write(volume)
        f.seek(root_start)
        f.write(noise)
    return path


def read_boot(path: Path, name: str) -> bytes:
    """One file of the image's boot partition."""
    fs = PyFatFS(str(path), offset=BOOT_START, read_only=True)
    try:
        return fs.readbytes(name)
    finally:
        fs.close()


def list_boot(path: Path, directory: str = "/") -> list[str]:
    fs = PyFatFS(str(path), offset=BOOT_START, read_only=True)
    try:
        return sorted(fs.listdir(directory))
    finally:
        fs.close()


def tuf_root(path: Path, days: int = 365) -> Path:
    """A TUF root.json signed by its own (single, ed25519) key for every top-level role."""
    from securesystemslib.signer import CryptoSigner
    from tuf.api.metadata import Metadata, Root
    from tuf.api.serialization.json import JSONSerializer

    signer = CryptoSigner.generate_ed25519()
    root = Root(expires=datetime.now(UTC).replace(microsecond=0) + timedelta(days=days))
    for role in ("root", "targets", "snapshot", "timestamp"):
        root.add_key(signer.public_key, role)
    metadata = Metadata(root)
    metadata.sign(signer)
    path.write_bytes(metadata.to_bytes(JSONSerializer(compact=False)))
    return path
