"""Bundles as MLflow models: `tinylcm bundle register` logs a pyfunc model that predicts what `tinylcm replay` does.

A real MLflow server with S3 artifacts (the test services); the factory bundle; real TFLite.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from device.capture.digits import DigitsSource
from device.errors import FrameError
from device.mlflow_model import BUNDLE_TAGS, frames_of
from tests.server import services
from tests.utils.bundles import FACTORY, copy_factory

TINYLCM = [sys.executable, "-m", "device.cli"]
SHAPE = (32, 32, 3)


@pytest.fixture(scope="module")
def mlflow_env() -> Iterator[dict[str, str]]:
    """MLflow's tracking URI and S3 settings, in this process's environment and returned for subprocesses."""
    with services.environment(("TINYMLOPS_TEST_MLFLOW_URI", "TINYMLOPS_TEST_S3_ENDPOINT")) as env, \
            pytest.MonkeyPatch.context() as patch:
        settings = {"MLFLOW_TRACKING_URI": env["TINYMLOPS_TEST_MLFLOW_URI"],
                    "MLFLOW_S3_ENDPOINT_URL": env["TINYMLOPS_TEST_S3_ENDPOINT"],
                    "AWS_ACCESS_KEY_ID": env["TINYMLOPS_TEST_S3_ACCESS_KEY"],
                    "AWS_SECRET_ACCESS_KEY": env["TINYMLOPS_TEST_S3_SECRET_KEY"], "AWS_DEFAULT_REGION": "us-east-1"}
        for key, value in settings.items():
            patch.setenv(key, value)
        yield settings


def tinylcm(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*TINYLCM, *args], capture_output=True, text=True, timeout=300,
                          env={**os.environ, **(env or {})})


@pytest.fixture(scope="module")
def registered(mlflow_env: dict[str, str]) -> str:
    """The factory bundle registered through the CLI as a new model, alias champion; its name."""
    name = f"digits-{uuid.uuid4().hex[:8]}"
    out = tinylcm("bundle", "register", str(FACTORY), "--tracking-uri", mlflow_env["MLFLOW_TRACKING_URI"],
                  "--name", name, "--alias", "champion", env=mlflow_env)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "1"  # the new model's first version, alone on stdout
    return name


@pytest.fixture(scope="module")
def frames(tmp_path_factory: pytest.TempPathFactory) -> tuple[np.ndarray, Path]:
    """50 digits frames, as one array and as a directory of PNGs in the same order."""
    directory = tmp_path_factory.mktemp("frames")
    images = np.stack([frame.image for frame in DigitsSource(seed=7, limit=50)])
    for i, image in enumerate(images):
        Image.fromarray(image).save(directory / f"{i:03d}.png")
    return images, directory


def test_the_pyfunc_model_predicts_what_replay_reports(registered: str, frames: tuple[np.ndarray, Path]) -> None:
    import mlflow.pyfunc

    images, directory = frames
    replay = tinylcm("replay", "--bundle", str(FACTORY), "--source", f"dir:{directory}", "--jsonl")
    assert replay.returncode == 0, replay.stderr
    *rows, last = [json.loads(line) for line in replay.stdout.splitlines() if line.strip()]
    assert last["summary"]["samples"] == 50 and last["summary"]["adaptations"] == 0  # the bundle's own kNN state
    model = mlflow.pyfunc.load_model(f"models:/{registered}@champion")
    predicted = model.predict(images)
    assert list(predicted["seq"]) == [row["seq"] for row in rows] == list(range(50))
    assert list(predicted["label"]) == [row["label"] for row in rows]
    assert list(predicted["confidence"]) == pytest.approx([row["confidence"] for row in rows], abs=1e-4)
    assert list(predicted["model_confidence"]) == pytest.approx([row["model_confidence"] for row in rows], abs=1e-4)
    assert len(set(predicted["label"])) > 1  # a real stream, not one answer fifty times
    by_list = model.predict(list(images[:5]))
    assert list(by_list["label"]) == list(predicted["label"][:5])
    with pytest.raises(FrameError, match=r"frame 0 is uint8\[28, 28, 3\], the model takes uint8\[32, 32, 3\]"):
        model.predict(np.zeros((2, 28, 28, 3), np.uint8))


def test_the_version_carries_the_bundles_identity_and_metrics(registered: str, mlflow_env: dict[str, str]) -> None:
    from mlflow.tracking import MlflowClient

    client = MlflowClient(mlflow_env["MLFLOW_TRACKING_URI"])
    version = client.get_model_version_by_alias(registered, "champion")
    meta = json.loads((FACTORY / "bundle.json").read_text())
    digest = hashlib.sha256((FACTORY / "bundle.json").read_bytes()).hexdigest()
    assert {tag: version.tags[tag] for tag in BUNDLE_TAGS} == dict(
        zip(BUNDLE_TAGS, (meta["name"], meta["version"], digest), strict=True))
    metrics = client.get_run(version.run_id).data.metrics
    assert metrics == pytest.approx({k: float(v) for k, v in meta["metrics"].items()})


def test_the_model_loads_the_device_code_it_carries(registered: str, mlflow_env: dict[str, str],
                                                    tmp_path: Path) -> None:
    code = ("import mlflow.pyfunc, numpy as np, sys\n"
            f"model = mlflow.pyfunc.load_model('models:/{registered}@champion')\n"
            "print(len(model.predict(np.zeros((3, 32, 32, 3), np.uint8))))\n"
            "print(sys.modules['device'].__file__)\n")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"} | mlflow_env
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, cwd=tmp_path,
                         env=env)
    assert out.returncode == 0, out.stderr
    count, device = out.stdout.split()[-2:]
    assert count == "3" and Path(device).parts[-3:] == ("code", "device", "__init__.py")


def test_a_bundle_that_fails_validation_is_one_line_exit_2(tmp_path: Path) -> None:
    broken = copy_factory(tmp_path)
    (broken / "labels.txt").write_text("0\n1\n")
    out = tinylcm("bundle", "register", str(broken), "--tracking-uri", "http://127.0.0.1:9", "--name", "digits")
    assert out.returncode == 2
    assert out.stderr.startswith("tinylcm: error: ") and "labels.txt" in out.stderr
    assert len(out.stderr.strip().splitlines()) == 1 and out.stdout == ""


@pytest.mark.parametrize(("frames_in", "message"), [
    (np.zeros((32, 32, 3), np.uint8), r"frames must be an array \(N, 32, 32, 3\), got \[32, 32, 3\]"),
    (np.zeros((1, 32, 32, 3), np.float32), r"frame 0 is float32\[32, 32, 3\], the model takes uint8\[32, 32, 3\]"),
    ([np.zeros((32, 32, 3), np.uint8), np.zeros((32, 31, 3), np.uint8)], r"frame 1 is uint8\[32, 31, 3\]"),
    ("frame.png", r"frames must be a uint8 array \(N, H, W, 3\) or a list of arrays"),
])
def test_frames_of_a_wrong_shape_or_type_are_refused_clearly(frames_in: object, message: str) -> None:
    with pytest.raises(FrameError, match=message):
        frames_of(frames_in, SHAPE)


def test_frames_of_a_batch_or_a_list() -> None:
    batch = np.arange(2 * 32 * 32 * 3, dtype=np.uint8).reshape(2, *SHAPE)
    assert [f.shape for f in frames_of(batch, SHAPE)] == [SHAPE, SHAPE]
    assert all((a == b).all() for a, b in zip(frames_of(list(batch), SHAPE), batch, strict=True))
