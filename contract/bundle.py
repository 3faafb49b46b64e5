"""A model bundle on disk: `bundle.json` plus the model, labels, transform, kNN state and drift reference.

Loading checks that every file is present and matches the SHA-256 recorded in `bundle.json`,
so a truncated or swapped file is refused before it reaches the interpreter.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from contract.errors import BundleError

MANIFEST_NAME = "bundle.json"
REQUIRED_FILES = ("model.tflite", "labels.txt", "transform.npz", "knn_state.npz", "drift_reference.json")
BUNDLE_FILES = (MANIFEST_NAME, *REQUIRED_FILES)  # exactly the files of a bundle, bundle.json first
ROLES = ("probabilities", "features")


@dataclass(frozen=True, slots=True)
class TensorSpec:
    """What `bundle.json` says about one tensor of the model."""

    name: str
    shape: tuple[int, ...]
    dtype: str


@dataclass(frozen=True, slots=True)
class Bundle:
    """A verified bundle directory."""

    path: Path
    name: str
    version: str
    input: TensorSpec
    outputs: dict[str, TensorSpec]  # role -> tensor; roles: probabilities, features
    labels: tuple[str, ...]
    meta: dict[str, Any]  # the whole bundle.json

    @property
    def frame_size(self) -> tuple[int, int]:
        """(width, height) of the frames the model takes."""
        return self.input.shape[2], self.input.shape[1]

    def file(self, name: str) -> Path:
        return self.path / name

    def drift_reference(self) -> dict[str, Any]:
        return _read_json(self.file("drift_reference.json"))


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError as exc:
        raise BundleError("file is missing", path) from exc
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BundleError(f"not valid JSON: {exc}", path) from exc
    if not isinstance(data, dict):
        raise BundleError("expected a JSON object", path)
    return data


def _tensor(meta: dict[str, Any], where: str, path: Path) -> TensorSpec:
    try:
        return TensorSpec(name=str(meta["name"]), shape=tuple(int(d) for d in meta["shape"]), dtype=str(meta["dtype"]))
    except (KeyError, TypeError, ValueError) as exc:
        raise BundleError(f"{where} needs name, shape and dtype ({exc!r})", path) from exc


def _verify_files(root: Path, meta: dict[str, Any]) -> None:
    digests = meta.get("files", {})
    for name in REQUIRED_FILES:
        path = root / name
        if not path.is_file():
            raise BundleError("file is missing", path)
        want = digests.get(name)
        if want is None:
            raise BundleError(f"bundle.json lists no sha256 for {name}", root / "bundle.json")
        verify_file(path, str(want))


def verify_file(path: Path, want: str) -> None:
    """Raise `BundleError` unless the file at `path` has the sha256 `want` (OSError if it cannot be read)."""
    with path.open("rb") as f:
        got = hashlib.file_digest(f, "sha256").hexdigest()
    if got != want:
        raise BundleError(f"sha256 {got[:12]}… does not match bundle.json ({want[:12]}…): corrupt file", path)


def load_bundle(path: str | Path, verify: bool = True) -> Bundle:
    """Read and check a bundle directory; raises `BundleError` naming the file at fault."""
    root = Path(path)
    if not root.is_dir():
        raise BundleError("bundle directory does not exist", root)
    meta_path = root / "bundle.json"
    meta = _read_json(meta_path)
    if verify:
        _verify_files(root, meta)
    outputs_meta = meta.get("outputs")
    if not isinstance(outputs_meta, dict) or any(r not in outputs_meta for r in ROLES):
        raise BundleError(f"outputs must name the roles {list(ROLES)}", meta_path)
    if "input" not in meta:
        raise BundleError("input tensor is not described", meta_path)
    labels = tuple(line.strip() for line in (root / "labels.txt").read_text().splitlines() if line.strip())
    bundle = Bundle(
        path=root,
        name=str(meta.get("name", root.name)),
        version=str(meta.get("version", "0")),
        input=_tensor(meta["input"], "input", meta_path),
        outputs={r: _tensor(outputs_meta[r], f"outputs.{r}", meta_path) for r in ROLES},
        labels=labels,
        meta=meta,
    )
    n_out = bundle.outputs["probabilities"].shape[-1]
    if n_out != len(labels):
        raise BundleError(f"labels.txt has {len(labels)} labels, the probabilities output has {n_out}", root)
    if len(bundle.input.shape) != 4 or bundle.input.shape[3] != 3:
        raise BundleError(f"input must be (1, H, W, 3), got {bundle.input.shape}", meta_path)
    return bundle
