"""What a signed target says about its bundle (custom field `tinymlops`), checked against this device.

Checked before download (device type, runtime, input) and again after unpacking (the bundle's own
`bundle.json` must say the same as the signed field). A signed `files` list names each file of the bundle
by SHA-256, length and its own content-addressed target: the updater then fetches only the files it lacks.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, replace
from importlib import metadata
from pathlib import Path
from typing import Any

from contract.bundle import BUNDLE_FILES as _FILES
from contract.bundle import Bundle
from device.errors import TargetMismatchError

log = logging.getLogger(__name__)

# /proc/device-tree/model prefix -> balena device type (the names bundles list in device_types)
BOARD_TYPES = (
    ("Raspberry Pi Zero 2", "raspberrypi0-2w-64"),
    ("Raspberry Pi 5", "raspberrypi5"),
    ("Raspberry Pi 4", "raspberrypi4-64"),
    ("Raspberry Pi 3", "raspberrypi3"),
    ("Raspberry Pi 2", "raspberry-pi2"),
)
INPUT_DTYPES = ("uint8",)  # what the capture sources deliver
BUNDLE_FILES = frozenset(_FILES)  # exactly what a signed file list names
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
LITERT_AS_TFLITE = "2.18"  # ai-edge-litert 1.0 continues TensorFlow Lite 2.18


@dataclass(frozen=True)
class DeviceProfile:
    """What the device offers a bundle."""

    device_type: str | None  # balena-style name; None: unknown board, only device-agnostic bundles fit
    tflite_version: str | None  # TFLite compatibility of the installed runtime; None: no runtime


@dataclass(frozen=True)
class FileEntry:
    """One file of a signed file list."""

    sha256: str
    length: int
    target: str  # the content-addressed TUF target holding exactly these bytes


@dataclass(frozen=True)
class TargetSpec:
    """The `tinymlops` custom field of one target."""

    model: str
    version: str
    input_shape: tuple[int, ...]
    input_dtype: str
    runtime: dict[str, Any]
    device_types: tuple[str, ...]
    files: dict[str, FileEntry] | None = None  # None: a tar-only target (published before file lists)


def detect_device_type(root: Path = Path("/")) -> str | None:
    """The balena device type of this board from the device tree, None off a Raspberry Pi."""
    try:
        model = (root / "proc/device-tree/model").read_text(errors="replace").replace("\x00", "").strip()
    except OSError:
        return None
    return next((kind for prefix, kind in BOARD_TYPES if model.startswith(prefix)), None)


def detect_tflite_version() -> str | None:
    """The TFLite version the installed runtime is compatible with."""
    for dist in ("tflite-runtime", "tflite_runtime"):
        try:
            return metadata.version(dist)
        except metadata.PackageNotFoundError:
            pass
    try:
        metadata.version("ai-edge-litert")
    except metadata.PackageNotFoundError:
        return None
    return LITERT_AS_TFLITE


def _version(text: str) -> tuple[int, ...]:
    return tuple(int(n) for n in re.findall(r"\d+", text)[:3])


def parse_spec(custom: dict[str, Any] | None, path: str) -> TargetSpec:
    """The spec of a target, or `TargetMismatchError` when the signed field is missing or malformed."""
    field = (custom or {}).get("tinymlops")
    try:
        runtime = field.get("runtime") or {} if isinstance(field, dict) else None
        if not isinstance(field, dict) or not isinstance(runtime, dict):
            raise TypeError("'tinymlops' and its 'runtime' must be objects")
        spec = TargetSpec(model=str(field["model"]), version=str(field["version"]),
                          input_shape=tuple(int(d) for d in field["input_shape"]),
                          input_dtype=str(field["input_dtype"]), runtime=runtime,
                          device_types=tuple(str(t) for t in field.get("device_types") or ()))
    except (KeyError, TypeError, ValueError) as exc:
        raise TargetMismatchError(f"{path}: no valid 'tinymlops' custom field ({exc!r})", "bad_custom_field") from exc
    if "files" not in field:
        return spec
    return replace(spec, files=parse_files(field["files"], path))


def parse_files(listed: Any, path: str) -> dict[str, FileEntry]:
    """A signed file list, or `TargetMismatchError` (file_list_mismatch) if it is not one of a bundle's files."""
    def refuse(why: str) -> TargetMismatchError:
        return TargetMismatchError(f"{path}: signed file list {why}", "file_list_mismatch")

    if not isinstance(listed, dict) or set(listed) != BUNDLE_FILES:
        names = sorted(map(str, listed)) if isinstance(listed, dict) else type(listed).__name__
        raise refuse(f"names {names}, a bundle has exactly {sorted(BUNDLE_FILES)}")
    files = {}
    for name, entry in listed.items():
        sha256 = entry.get("sha256") if isinstance(entry, dict) else None
        length = entry.get("length") if isinstance(entry, dict) else None
        target = entry.get("target") if isinstance(entry, dict) else None
        if not (isinstance(sha256, str) and _SHA256.match(sha256) and isinstance(length, int)
                and not isinstance(length, bool) and length >= 0 and isinstance(target, str) and target):
            raise refuse(f"entry {name!r} needs a sha256, a length and a target")
        files[name] = FileEntry(sha256, length, target)
    return files


def check_spec(spec: TargetSpec, device: DeviceProfile, model: str | None, version: str | None) -> None:
    """Refuse a target that is not the one asked for or cannot run here."""
    if (model and spec.model != model) or (version and spec.version != version):
        raise TargetMismatchError(f"target is {spec.model} {spec.version}, desired {model} {version}",
                                  "not_desired")
    if spec.device_types and device.device_type not in spec.device_types:
        raise TargetMismatchError(f"bundle is for {list(spec.device_types)}, this device is {device.device_type}",
                                  "device_type")
    wanted = spec.runtime.get("tflite_min")
    have = device.tflite_version
    if wanted is not None and (have is None or _version(have) < _version(str(wanted))):
        raise TargetMismatchError(f"bundle needs TFLite >= {wanted}, this device has {have}", "runtime")
    if len(spec.input_shape) != 4 or spec.input_shape[0] != 1 or spec.input_shape[3] != 3:
        raise TargetMismatchError(f"input shape {list(spec.input_shape)} is not (1, H, W, 3)", "input")
    if spec.input_dtype not in INPUT_DTYPES:
        raise TargetMismatchError(f"input dtype {spec.input_dtype} is not one of {INPUT_DTYPES}", "input")


def check_bundle(spec: TargetSpec, bundle: Bundle) -> None:
    """The unpacked bundle must be the one the signed target describes."""
    said = (bundle.name, bundle.version, bundle.input.shape, bundle.input.dtype)
    signed = (spec.model, spec.version, spec.input_shape, spec.input_dtype)
    if said != signed:
        raise TargetMismatchError(f"bundle.json says {said}, the signed target {signed}", "bundle_mismatch")
