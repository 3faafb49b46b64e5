"""Bundles as MLflow models: a pyfunc model that runs the device's own pipeline, and its registration.

`register_bundle` logs a bundle directory as an MLflow model with the pyfunc flavour: the bundle's files are the
model's `bundle` artifact (`<model>/artifacts/bundle/`) and the `device` and `contract` packages travel as its
code, so `mlflow.pyfunc.load_model("models:/digits@champion").predict(frames)` answers what a device would:
TFLite feature extractor -> standardize+PCA -> kNN, through `device.pipeline.Pipeline`. Frames are a uint8 array
(N, H, W, 3) or a list of (H, W, 3) arrays; the answer is a DataFrame with one row per frame and the fields of
`tinylcm replay --jsonl` that need no stream: seq, label, confidence, model_label, model_confidence.

Loading the model needs, besides mlflow (and pandas, which it brings): numpy, pillow, dacite and a TFLite runtime
(ai-edge-litert, or tflite-runtime); the model's requirements name them.

The device image has no mlflow: it is imported only inside the functions that need it, and `BundleModel` (an
`mlflow.pyfunc.PythonModel`) is defined when first asked for.
"""

from __future__ import annotations

import contextlib
import hashlib
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import numpy as np

from contract.bundle import BUNDLE_FILES, MANIFEST_NAME, Bundle
from device.errors import FrameError, RemoteError

ARTIFACT = "bundle"  # the model's artifact holding the bundle files; the server finds them at artifacts/bundle
COLUMNS = ("seq", "label", "confidence", "model_label", "model_confidence")
REQUIREMENTS = ("numpy", "pillow", "dacite", "ai-edge-litert", "pandas", "mlflow")
BUNDLE_TAGS = ("tinylcm.bundle.name", "tinylcm.bundle.version", "tinylcm.bundle.sha256")
PACKAGES = ("device", "contract")  # what the model's code must carry to run the pipeline
MODEL_CODE = """\"\"\"The MLflow model of a TinyMLOps bundle (see device.mlflow_model).\"\"\"

import mlflow

from device.mlflow_model import BundleModel

mlflow.models.set_model(BundleModel())
"""  # logged as the model's code ("models from code"): nothing is unpickled when it loads


@dataclass(frozen=True, slots=True)
class RegisteredVersion:
    """The model version a bundle became."""

    name: str
    version: str
    run_id: str


def frames_of(model_input: Any, shape: tuple[int, ...]) -> list[np.ndarray]:
    """The (H, W, 3) uint8 frames of a batch array or a list of arrays; a `FrameError` says what is wrong."""
    if isinstance(model_input, np.ndarray):
        if model_input.ndim != len(shape) + 1:
            want = ", ".join(map(str, shape))
            raise FrameError(f"frames must be an array (N, {want}), got {list(model_input.shape)}")
        model_input = list(model_input)
    if not isinstance(model_input, list | tuple):
        raise FrameError(f"frames must be a uint8 array (N, H, W, 3) or a list of arrays, got {type(model_input)}")
    frames = [np.asarray(image) for image in model_input]
    for i, image in enumerate(frames):
        if image.shape != shape or image.dtype != np.uint8:
            raise FrameError(f"frame {i} is {image.dtype}{list(image.shape)}, the model takes uint8{list(shape)}")
    return frames


def _define_model() -> type:
    import pandas as pd
    from mlflow.pyfunc import PythonModel

    from device.capture.base import Frame
    from device.pipeline.pipeline import Pipeline

    class BundleModel(PythonModel):
        """The bundle's pipeline without detectors or adapter: each frame is decided on the bundle's own kNN state."""

        # no type hint on model_input and no validation by MLflow: frames_of checks the frames
        _skip_type_hint_validation = True

        def load_context(self, context: Any) -> None:
            self.pipeline = Pipeline.from_bundle(context.artifacts[ARTIFACT], detect=False)

        def predict(self, context: Any, model_input, params: dict[str, Any] | None = None) -> Any:
            pipeline = self.pipeline
            rows = []
            for seq, image in enumerate(frames_of(model_input, pipeline.bundle.input.shape[1:])):
                started = time.perf_counter()
                frame = Frame(image)
                result = pipeline.classify(frame, seq, *pipeline.extract(frame), started)
                rows.append((seq, result.label, result.confidence, result.model_label, result.model_confidence))
            return pd.DataFrame(rows, columns=list(COLUMNS))

    BundleModel.__module__, BundleModel.__qualname__ = __name__, "BundleModel"  # named as this module's attribute
    return BundleModel


def __getattr__(name: str) -> Any:
    """`BundleModel`, defined (importing mlflow) on first use."""
    if name == "BundleModel":
        cls = globals()["BundleModel"] = _define_model()
        return cls
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _requirements() -> list[str]:
    """The installed versions of what loading the model needs."""
    pinned = []
    for name in REQUIREMENTS:
        try:
            pinned.append(f"{name}=={version(name)}")
        except PackageNotFoundError:
            pinned.append(name)
    return pinned


def _stage(bundle: Path, workdir: Path) -> tuple[Path, Path, list[str]]:
    """Under `workdir`: exactly the bundle's files, the model's code file, and the packages' Python sources (no
    caches, models or data)."""
    staged = workdir / ARTIFACT
    staged.mkdir()
    for name in BUNDLE_FILES:
        shutil.copy2(bundle / name, staged / name)
    code = []
    for package in PACKAGES:
        source = Path(__import__(package).__file__ or "").parent
        target = workdir / "code" / package
        for path in source.rglob("*.py"):
            (target / path.relative_to(source)).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(path, target / path.relative_to(source))
        code.append(str(target))
    model_code = workdir / "bundle_model.py"
    model_code.write_text(MODEL_CODE)
    return staged, model_code, code


def register_bundle(path: str | Path, tracking_uri: str, name: str, alias: str | None = None,
                    experiment: str | None = None, artifact_location: str | None = None) -> RegisteredVersion:
    """Log a bundle directory as a pyfunc model in a run of `experiment` (default: `name`), register it as `name`.

    The run gets bundle.json's numeric `metrics`; the version gets the bundle's name, version and the SHA-256 of
    bundle.json as tags, and `alias` if given. A bundle the pipeline cannot load raises `BundleError` first.
    Sets the process's MLflow tracking and registry URI to `tracking_uri`; what MLflow prints goes to stderr.
    """
    from mlflow.exceptions import MlflowException

    from device.pipeline.pipeline import Pipeline

    bundle = Pipeline.from_bundle(path, detect=False).bundle  # the bundle is checked as a device would load it
    try:
        return _log_and_register(bundle, tracking_uri, name, alias, experiment, artifact_location)
    except MlflowException as exc:
        raise RemoteError(f"MLflow at {tracking_uri}: {exc.message}") from exc


def _log_and_register(bundle: Bundle, tracking_uri: str, name: str, alias: str | None, experiment: str | None,
                      artifact_location: str | None) -> RegisteredVersion:
    import mlflow
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri, registry_uri=tracking_uri)
    found = client.get_experiment_by_name(experiment or name)
    experiment_id = found.experiment_id if found else client.create_experiment(experiment or name, artifact_location)
    mlflow.set_tracking_uri(tracking_uri)
    mlflow.set_registry_uri(tracking_uri)
    metrics = {k: float(v) for k, v in bundle.meta.get("metrics", {}).items()
               if isinstance(v, int | float) and not isinstance(v, bool)}
    with tempfile.TemporaryDirectory() as tmp, contextlib.redirect_stdout(sys.stderr), \
            mlflow.start_run(experiment_id=experiment_id, run_name=f"{bundle.name}-{bundle.version}") as run:
        staged, model_code, code = _stage(bundle.path, Path(tmp))
        mlflow.log_metrics(metrics)
        info = mlflow.pyfunc.log_model(name="model", python_model=str(model_code),
                                       artifacts={ARTIFACT: str(staged)}, code_paths=code,
                                       registered_model_name=name, pip_requirements=_requirements())
    number = str(info.registered_model_version)
    digest = hashlib.sha256((bundle.path / MANIFEST_NAME).read_bytes()).hexdigest()
    for tag, value in zip(BUNDLE_TAGS, (bundle.name, bundle.version, digest), strict=True):
        client.set_model_version_tag(name, number, tag, value)
    if alias:
        client.set_registered_model_alias(name, alias, number)
    return RegisteredVersion(name=name, version=number, run_id=run.info.run_id)
