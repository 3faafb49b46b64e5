"""Build a model bundle: train a small CNN on rendered digits (or wrap a random-weight MobileNetV2 as a
benchmark fixture), export it as full-int8 TFLite, fit the feature transform and the kNN reference.

Runs only in the TensorFlow venv, e.g. `/work/.tfvenv/bin/python scripts/train_model.py --classes 0-5`.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib
import io
import json
import logging
import os
import sys
import tempfile
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # keep TensorFlow's C++ start-up chatter out of the log
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")  # oneDNN reorders float sums: weights would vary by CPU

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from PIL import Image  # noqa: E402
from sklearn.cluster import KMeans  # noqa: E402
from sklearn.datasets import load_digits  # noqa: E402
from sklearn.decomposition import PCA  # noqa: E402
from sklearn.model_selection import train_test_split  # noqa: E402
from sklearn.preprocessing import StandardScaler  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from device.capture.digits import render  # noqa: E402
from device.knn import KNNClassifier  # noqa: E402

log = logging.getLogger("train_model")

HELDOUT_PATH = REPO / "device" / "data" / "digits_heldout.npz"
DEVICE_TYPES = ["raspberrypi0-2w-64", "raspberry-pi2", "raspberrypi3"]
KNN_K = 5
KNN_METRIC = "euclidean"
KNN_MAX_SAMPLES = 200  # reference vectors shipped in knn_state.npz, split equally between classes
FIXED_ZIP_TIME = (1980, 1, 1, 0, 0, 0)  # npz members get a fixed timestamp so file hashes are reproducible

# Independent random streams, so changing how many frames one step renders leaves the others alone.
STREAM_TRAIN, STREAM_REPRESENTATIVE, STREAM_FEATURES, STREAM_CALIBRATION, STREAM_HELDOUT, STREAM_BATCHNORM = range(6)
BATCHNORM_SAMPLES = 48  # frames in the one batch that sets the random MobileNetV2's BatchNorm statistics


@dataclass(frozen=True)
class Recipe:
    """What differs between the factory CNN and the MobileNetV2 benchmark fixture."""

    arch: str
    name: str
    description: str
    input_size: int  # frames are resized to input_size x input_size x 3 before the model
    feature_dim: int  # width of the feature output
    components: int  # PCA output dimension
    train_renders: int  # augmented renders per fit sample for training (0: the model is not trained)
    feature_renders: int  # renders per fit sample for the transform and the kNN pool
    max_feature_samples: int | None  # cap on the fit samples used for the transform (None: all)
    representative_samples: int  # frames given to the int8 calibration of the converter


RECIPES = {
    "cnn": Recipe(
        arch="cnn",
        name="digits",
        description="Small CNN on rendered 8x8 digits (32x32 RGB frames); 64-d features for PCA + kNN.",
        input_size=32,
        feature_dim=64,
        components=16,
        train_renders=10,
        feature_renders=3,
        max_feature_samples=None,
        representative_samples=300,
    ),
    "mobilenetv2": Recipe(
        arch="mobilenetv2",
        name="mobilenetv2-fixture",
        description="Benchmark fixture: MobileNetV2 (224x224), random untrained weights with BatchNorm statistics "
        "set from rendered digits; 1280-d features.",
        input_size=224,
        feature_dim=1280,
        components=256,
        train_renders=0,
        feature_renders=1,
        max_feature_samples=384,
        representative_samples=64,
    ),
}


@dataclass(frozen=True)
class Split:
    """The digits as uint8 glyphs with their labels, and the indices of each split."""

    images: np.ndarray  # (n, 8, 8) uint8
    labels: np.ndarray  # (n,) int64
    fit: np.ndarray  # fits the model, the transform and the kNN reference
    calibration: np.ndarray  # only for the drift reference statistics
    heldout: np.ndarray  # ships as device/data/digits_heldout.npz; only for metrics


def parse_classes(text: str) -> list[int]:
    """Parse '0-5' or '0,2,4' into a sorted list of digit classes."""
    classes: set[int] = set()
    for part in text.split(","):
        lo, _, hi = part.partition("-")
        classes.update(range(int(lo), int(hi or lo) + 1))
    if not classes or not classes <= set(range(10)) or len(classes) < 2:
        raise argparse.ArgumentTypeError(f"classes must be at least two digits in 0..9, got {text!r}")
    return sorted(classes)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command line; --classes and --out default by architecture."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arch", choices=sorted(RECIPES), default="cnn")
    parser.add_argument(
        "--classes",
        type=parse_classes,
        default=None,
        help="digits the model knows, e.g. 0-5 or 0,1,2 (default: 0-5 for cnn, 0-9 for mobilenetv2)",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--out",
        type=Path,
        default=None,
        help="bundle directory (default: device/models/digits for cnn, benchmarks/fixtures/mobilenetv2)",
    )
    parser.add_argument("--epochs", type=int, default=12, help="training epochs (cnn only)")
    parser.add_argument("--version", default="1.0.0", help="bundle version written to bundle.json")
    args = parser.parse_args(argv)
    if args.classes is None:
        args.classes = list(range(10)) if args.arch == "mobilenetv2" else list(range(6))
    if args.out is None:
        args.out = REPO / ("benchmarks/fixtures/mobilenetv2" if args.arch == "mobilenetv2" else "device/models/digits")
    return args


def configure_tensorflow(seed: int) -> None:
    """Make training reproducible: fixed seeds, deterministic kernels, one thread."""
    tf.config.threading.set_inter_op_parallelism_threads(1)
    tf.config.threading.set_intra_op_parallelism_threads(1)
    tf.keras.utils.set_random_seed(seed)
    tf.config.experimental.enable_op_determinism()


def stream(seed: int, purpose: int) -> np.random.Generator:
    """The random stream of one step (STREAM_*) of the build."""
    return np.random.default_rng([seed, purpose])


# --- data -----------------------------------------------------------------------------------------------


def load_split(seed: int) -> Split:
    """Load scikit-learn's digits and split them; the held-out split never depends on `seed`."""
    digits = load_digits()
    images = np.round(digits.images * (255 / 16)).astype(np.uint8)
    labels = digits.target.astype(np.int64)
    tr, te = train_test_split(np.arange(len(digits.target)), test_size=0.3, random_state=0, stratify=digits.target)
    fit, cal = train_test_split(tr, test_size=0.2, random_state=seed, stratify=labels[tr])
    return Split(images=images, labels=labels, fit=np.sort(fit), calibration=np.sort(cal), heldout=te)


def write_heldout(split: Split, path: Path) -> None:
    """Write the held-out split, unless the file already holds exactly these arrays."""
    images, labels = split.images[split.heldout], split.labels[split.heldout]
    if path.exists():
        with np.load(path, allow_pickle=False) as npz:
            old_images, old_labels = npz["images"], npz["labels"]
        same = np.array_equal(old_images, images) and np.array_equal(old_labels, labels)
        if same and old_labels.dtype == labels.dtype:
            log.info("held-out split unchanged: %s (%d samples)", path, len(labels))
            return
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(path, images=images, labels=labels)
    log.info("wrote held-out split %s (%d samples)", path, len(labels))


def select(split: Split, indices: np.ndarray, classes: list[int]) -> np.ndarray:
    """Keep the indices whose label is one of `classes`."""
    return indices[np.isin(split.labels[indices], classes)]


def render_frames(glyphs: np.ndarray, repeats: int, size: int, rng: np.random.Generator) -> np.ndarray:
    """Render every glyph `repeats` times (consecutively) as uint8 frames of size x size x 3."""
    frames = np.stack([render(glyph, rng) for glyph in glyphs for _ in range(repeats)])
    if size == frames.shape[1]:
        return frames
    resized = [np.asarray(Image.fromarray(f).resize((size, size), Image.Resampling.BILINEAR)) for f in frames]
    return np.stack(resized)


# --- models ---------------------------------------------------------------------------------------------


def build_cnn(n_classes: int, feature_dim: int) -> tf.keras.Model:
    """A small CNN on raw 0..255 pixels with two outputs: class probabilities and features."""
    layers = tf.keras.layers
    image = tf.keras.Input(shape=(32, 32, 3), name="image")
    x = layers.Rescaling(1 / 255)(image)
    for filters in (16, 32, 32):
        x = layers.Conv2D(filters, 3, padding="same", activation="relu")(x)
        x = layers.MaxPooling2D()(x)
    x = layers.Flatten()(x)
    x = layers.Dropout(0.2)(x)
    features = layers.Dense(feature_dim, activation="relu", name="features")(x)
    probabilities = layers.Dense(n_classes, activation="softmax", name="probabilities")(features)
    return tf.keras.Model(image, [probabilities, features], name="digits_cnn")


def build_mobilenet(n_classes: int, size: int) -> tf.keras.Model:
    """MobileNetV2 with random weights on raw 0..255 pixels; probabilities and the pooled 1280-d features."""
    image = tf.keras.Input(shape=(size, size, 3), name="image")
    scaled = tf.keras.layers.Rescaling(1 / 127.5, offset=-1.0)(image)  # MobileNetV2 expects -1..1
    backbone = tf.keras.applications.MobileNetV2(
        input_shape=(size, size, 3), weights=None, include_top=False, pooling="avg"
    )
    features = backbone(scaled)
    probabilities = tf.keras.layers.Dense(n_classes, activation="softmax", name="probabilities")(features)
    return tf.keras.Model(image, [probabilities, features], name="mobilenetv2_fixture")


def calibrate_batchnorm(model: tf.keras.Model, frames: np.ndarray) -> None:
    """Set every BatchNorm's moving statistics to those of one batch of `frames`.

    With random weights and the default statistics (mean 0, variance 1) activations shrink at
    every block; the pooled features end near 1e-11 and int8 rounds them all to one value.
    """

    def walk(layer: tf.keras.layers.Layer) -> Iterator[tf.keras.layers.Layer]:
        yield layer
        for inner in getattr(layer, "layers", []):
            yield from walk(inner)

    norms = [layer for layer in walk(model) if isinstance(layer, tf.keras.layers.BatchNormalization)]
    momentum = [layer.momentum for layer in norms]
    for layer in norms:
        layer.momentum = 0.0  # the moving statistics become exactly this batch's statistics
    model(frames.astype(np.float32), training=True)
    for layer, value in zip(norms, momentum, strict=True):
        layer.momentum = value


def train(model: tf.keras.Model, frames: np.ndarray, targets: np.ndarray, epochs: int) -> None:
    """Fit the classifier head and everything below it; the feature output shares those layers."""
    classifier = tf.keras.Model(model.input, model.outputs[0])
    classifier.compile(
        optimizer=tf.keras.optimizers.Adam(1e-3),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )
    history = classifier.fit(
        frames.astype(np.float32),
        targets,
        batch_size=64,
        epochs=epochs,
        verbose=0,
        shuffle=True,
    )
    for epoch, (loss, acc) in enumerate(zip(history.history["loss"], history.history["accuracy"], strict=True)):
        log.info("epoch %d: loss %.4f, accuracy %.4f", epoch + 1, loss, acc)


def export_int8(model: tf.keras.Model, representative: np.ndarray) -> bytes:
    """Convert to full-int8 TFLite: uint8 input (raw pixels), int8 outputs, int8 builtin ops only."""
    size = model.input.shape[1]

    @tf.function(input_signature=[tf.TensorSpec([1, size, size, 3], tf.float32, name="image")])
    def serve(image: tf.Tensor) -> dict[str, tf.Tensor]:
        probabilities, features = model(image, training=False)
        return {"probabilities": probabilities, "features": features}

    def dataset() -> Iterator[list[np.ndarray]]:
        # One frame spanning 0..255 pins the input quantization to scale 1, zero point 0 (raw pixels).
        yield [np.arange(size * size * 3, dtype=np.float32).reshape(1, size, size, 3) % 256]
        for frame in representative:
            yield [frame[None].astype(np.float32)]

    # No trackable object: the saved-model route keeps READ_VARIABLE ops that fail int8 calibration
    # for Keras 3 models; this route freezes the weights into constants first.
    converter = tf.lite.TFLiteConverter.from_concrete_functions([serve.get_concrete_function()])
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = dataset
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    converter.inference_input_type = tf.uint8
    converter.inference_output_type = tf.int8
    return bytes(converter.convert())


class Int8Model:
    """The exported model run by the TFLite interpreter, as the device runs it; outputs found by shape."""

    def __init__(self, content: bytes, n_classes: int, feature_dim: int) -> None:
        self.interpreter = tf.lite.Interpreter(model_content=content, num_threads=2)
        self.interpreter.allocate_tensors()
        self.input = self.interpreter.get_input_details()[0]
        by_width = {int(d["shape"][-1]): d for d in self.interpreter.get_output_details()}
        if set(by_width) != {n_classes, feature_dim}:
            raise ValueError(f"expected outputs of width {n_classes} and {feature_dim}, got {sorted(by_width)}")
        self.probabilities = by_width[n_classes]
        self.features = by_width[feature_dim]

    def _output(self, detail: dict[str, Any]) -> np.ndarray:
        scale, zero_point = detail["quantization"]
        raw = self.interpreter.get_tensor(detail["index"]).astype(np.float32)
        return ((raw - zero_point) * scale)[0]

    def run(self, frames: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Dequantized (probabilities, features) for uint8 frames (n, h, w, 3)."""
        probabilities, features = [], []
        for frame in frames:
            self.interpreter.set_tensor(self.input["index"], frame[None])
            self.interpreter.invoke()
            probabilities.append(self._output(self.probabilities))
            features.append(self._output(self.features))
        return np.stack(probabilities), np.stack(features)


# --- transform and kNN ----------------------------------------------------------------------------------


def fit_transform(features: np.ndarray, components: int, seed: int) -> dict[str, np.ndarray]:
    """StandardScaler + PCA on the int8 model's features, as plain float32 arrays for transform.npz."""
    scaler = StandardScaler().fit(features)
    scale = np.where(scaler.scale_ == 0, 1.0, scaler.scale_)
    pca = PCA(n_components=components, random_state=seed).fit((features - scaler.mean_) / scale)
    log.info(
        "PCA %d -> %d keeps %.1f%% of the variance",
        features.shape[1],
        components,
        100 * pca.explained_variance_ratio_.sum(),
    )
    arrays = {
        "mean": scaler.mean_,
        "scale": scale,
        "components": pca.components_,
        "pca_mean": pca.mean_,
        "explained_variance": pca.explained_variance_,
    }
    return {key: np.asarray(value, dtype=np.float32) for key, value in arrays.items()}


def apply_transform(transform: dict[str, np.ndarray], features: np.ndarray) -> np.ndarray:
    """Features (n, d) to PCA space (n, k), as device.pipeline.transform computes it."""
    standardized = (features - transform["mean"]) / transform["scale"]
    return ((standardized - transform["pca_mean"]) @ transform["components"].T).astype(np.float32)


def select_reference(
    vectors: np.ndarray, labels: np.ndarray, max_total: int, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Pick an equal number of vectors per class: those nearest to the class's k-means centroids."""
    names = np.unique(labels)
    per_class = max_total // len(names)
    chosen: list[int] = []
    for name in names:
        members = np.flatnonzero(labels == name)
        kmeans = KMeans(n_clusters=per_class, random_state=seed, n_init=4).fit(vectors[members])
        distances = np.linalg.norm(vectors[members][None] - kmeans.cluster_centers_[:, None], axis=-1)
        taken: set[int] = set()
        for row in distances:
            best = next(int(i) for i in np.argsort(row, kind="stable") if int(i) not in taken)
            taken.add(best)
            chosen.append(int(members[best]))
    return vectors[chosen], labels[chosen]


def knn_predict(reference: tuple[np.ndarray, np.ndarray], queries: np.ndarray) -> np.ndarray:
    """Labels the device's own kNN classifier gives `queries`, with `reference` as its reference set."""
    knn = KNNClassifier(k=KNN_K, metric=KNN_METRIC, max_samples=KNN_MAX_SAMPLES).fit(*reference)
    return np.array([knn.predict(query)[0] for query in queries])


def drift_reference(
    reference: tuple[np.ndarray, np.ndarray],
    calibration_vectors: np.ndarray,
    calibration_probabilities: np.ndarray,
) -> dict[str, Any] | None:
    """Reference statistics from device.monitor.reference, or None while that module does not exist yet."""
    try:
        module = importlib.import_module("device.monitor.reference")
    except ModuleNotFoundError as exc:
        if exc.name not in {"device.monitor", "device.monitor.reference"}:
            raise
        log.warning("device.monitor.reference is missing: drift_reference.json is not written")
        return None
    build: Callable[..., dict[str, Any]] = module.build_reference
    return build(
        reference_vectors=reference[0],
        reference_labels=reference[1],
        calibration_vectors=calibration_vectors,
        calibration_probabilities=calibration_probabilities,
        k=KNN_K,
        metric=KNN_METRIC,
    )


# --- bundle files ---------------------------------------------------------------------------------------


def write_atomic(path: Path, content: bytes) -> None:
    """Write through a temporary file in the same directory, then rename over `path`."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(content)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o644)  # mkstemp creates 0600; bundle files are shipped and read by other users
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def npz_bytes(arrays: dict[str, np.ndarray]) -> bytes:
    """A compressed .npz (no pickles) whose bytes depend only on the arrays, not on the clock."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for key, array in arrays.items():
            info = zipfile.ZipInfo(f"{key}.npy", date_time=FIXED_ZIP_TIME)
            info.compress_type = zipfile.ZIP_DEFLATED
            with archive.open(info, "w") as member:
                np.lib.format.write_array(member, np.ascontiguousarray(array), allow_pickle=False)
    return buffer.getvalue()


def json_bytes(document: dict[str, Any], sort_keys: bool) -> bytes:
    """Indented JSON with a final newline."""
    return (json.dumps(document, indent=2, sort_keys=sort_keys) + "\n").encode()


def tensor_entry(detail: dict[str, Any]) -> dict[str, Any]:
    """A tensor as bundle.json describes it: name, shape, dtype, [scale, zero point]."""
    scale, zero_point = detail["quantization"]
    return {
        "name": detail["name"],
        "shape": [int(n) for n in detail["shape"]],
        "dtype": np.dtype(detail["dtype"]).name,
        "quantization": [float(scale), int(zero_point)],
    }


# --- the build ------------------------------------------------------------------------------------------


@dataclass
class Built:
    """Everything the bundle is written from."""

    tflite: bytes
    model: Int8Model
    transform: dict[str, np.ndarray]
    reference: tuple[np.ndarray, np.ndarray]
    metrics: dict[str, float | int]
    drift: dict[str, Any] | None


def make_model(recipe: Recipe, args: argparse.Namespace, split: Split) -> bytes:
    """Build (and for the CNN, train) the Keras model, then export it as int8 TFLite bytes."""
    fit = select(split, split.fit, args.classes)
    targets = np.searchsorted(args.classes, split.labels[fit])
    if recipe.arch == "cnn":
        model = build_cnn(len(args.classes), recipe.feature_dim)
        rng = stream(args.seed, STREAM_TRAIN)
        frames = render_frames(split.images[fit], recipe.train_renders, recipe.input_size, rng)
        log.info("training on %d frames from %d fit samples of classes %s", len(frames), len(fit), args.classes)
        train(model, frames, np.repeat(targets, recipe.train_renders), args.epochs)
    else:
        model = build_mobilenet(len(args.classes), recipe.input_size)
        rng = stream(args.seed, STREAM_BATCHNORM)
        picks = rng.choice(fit, size=BATCHNORM_SAMPLES, replace=False)
        calibrate_batchnorm(model, render_frames(split.images[picks], 1, recipe.input_size, rng))
        log.info("MobileNetV2 with random weights: %d parameters, not trained", model.count_params())
    rng = stream(args.seed, STREAM_REPRESENTATIVE)
    picks = rng.choice(fit, size=min(recipe.representative_samples, len(fit)), replace=False)
    representative = render_frames(split.images[picks], 1, recipe.input_size, rng)
    log.info("converting to full-int8 TFLite (%d representative frames)", len(representative) + 1)
    return export_int8(model, representative)


def fit_reference(
    recipe: Recipe, args: argparse.Namespace, split: Split, model: Int8Model
) -> tuple[dict[str, np.ndarray], tuple[np.ndarray, np.ndarray], float]:
    """Transform and kNN reference from the fit split's int8 features; also the fit-split softmax accuracy."""
    fit = select(split, split.fit, args.classes)
    rng = stream(args.seed, STREAM_FEATURES)
    if recipe.max_feature_samples is not None and len(fit) > recipe.max_feature_samples:
        fit = np.sort(rng.choice(fit, size=recipe.max_feature_samples, replace=False))
    frames = render_frames(split.images[fit], recipe.feature_renders, recipe.input_size, rng)
    labels = np.repeat(split.labels[fit], recipe.feature_renders)
    log.info("running the int8 model on %d fit frames", len(frames))
    probabilities, features = model.run(frames)
    transform = fit_transform(features, recipe.components, args.seed)
    vectors = apply_transform(transform, features)
    names = np.array([str(n) for n in labels], dtype="<U32")
    reference = select_reference(vectors, names, KNN_MAX_SAMPLES, args.seed)
    train_accuracy = float(np.mean(np.array(args.classes)[probabilities.argmax(axis=1)] == labels))
    return transform, reference, train_accuracy


def evaluate(recipe: Recipe, args: argparse.Namespace, split: Split, built: Built) -> dict[str, float | int]:
    """Held-out accuracy of the int8 softmax and of the kNN on PCA vectors, over the classes the model knows."""
    heldout = select(split, split.heldout, args.classes)
    frames = render_frames(split.images[heldout], 1, recipe.input_size, stream(args.seed, STREAM_HELDOUT))
    truth = split.labels[heldout]
    probabilities, features = built.model.run(frames)
    softmax = np.array(args.classes)[probabilities.argmax(axis=1)]
    knn = knn_predict(built.reference, apply_transform(built.transform, features))
    return {
        "heldout_accuracy": round(float(np.mean(softmax == truth)), 4),
        "heldout_knn_accuracy": round(float(np.mean(knn.astype(np.int64) == truth)), 4),
        "heldout_samples": len(heldout),
    }


def calibrate_drift(recipe: Recipe, args: argparse.Namespace, split: Split, built: Built) -> dict[str, Any] | None:
    """Drift reference statistics from the calibration split, rendered a few times per sample."""
    calibration = select(split, split.calibration, args.classes)
    frames = render_frames(split.images[calibration], 3, recipe.input_size, stream(args.seed, STREAM_CALIBRATION))
    log.info("running the int8 model on %d calibration frames", len(frames))
    probabilities, features = built.model.run(frames)
    return drift_reference(built.reference, apply_transform(built.transform, features), probabilities)


def build(recipe: Recipe, args: argparse.Namespace, split: Split) -> Built:
    """Model, transform, kNN reference, metrics and drift reference for one bundle."""
    tflite = make_model(recipe, args, split)
    model = Int8Model(tflite, len(args.classes), recipe.feature_dim)
    transform, reference, train_accuracy = fit_reference(recipe, args, split, model)
    built = Built(tflite, model, transform, reference, {"train_accuracy": round(train_accuracy, 4)}, None)
    built.metrics.update(evaluate(recipe, args, split, built))
    log.info("metrics: %s", built.metrics)
    built.drift = calibrate_drift(recipe, args, split, built)
    return built


def manifest(recipe: Recipe, args: argparse.Namespace, built: Built, hashes: dict[str, str]) -> dict[str, Any]:
    """The bundle.json document: deterministic, no timestamps."""
    return {
        "format": 1,
        "name": recipe.name,
        "version": args.version,
        "description": recipe.description,
        "input": tensor_entry(built.model.input),
        "outputs": {
            "probabilities": tensor_entry(built.model.probabilities),
            "features": tensor_entry(built.model.features),
        },
        "labels": [str(c) for c in args.classes],
        "classes_trained": list(args.classes),
        "transform": {"input_dim": recipe.feature_dim, "output_dim": recipe.components},
        "knn": {"k": KNN_K, "metric": KNN_METRIC, "samples": len(built.reference[1])},
        "runtime": {"tflite_min": "2.14", "quantization": "full-int8"},
        "device_types": DEVICE_TYPES,
        "metrics": built.metrics,
        "seed": args.seed,
        "files": hashes,
    }


def write_bundle(recipe: Recipe, args: argparse.Namespace, built: Built) -> None:
    """Write every bundle file, then bundle.json with their SHA-256 digests."""
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    files = {
        "model.tflite": built.tflite,
        "labels.txt": "".join(f"{c}\n" for c in args.classes).encode(),
        "transform.npz": npz_bytes(built.transform),
        "knn_state.npz": npz_bytes({"vectors": built.reference[0], "labels": built.reference[1]}),
    }
    if built.drift is not None:
        files["drift_reference.json"] = json_bytes(built.drift, sort_keys=False)
    elif (out / "drift_reference.json").exists():
        (out / "drift_reference.json").unlink()  # stale: it described an earlier model
    for name, content in files.items():
        write_atomic(out / name, content)
        log.info("wrote %s (%d bytes)", out / name, len(content))
    hashes = {name: hashlib.sha256(content).hexdigest() for name, content in files.items()}
    write_atomic(out / "bundle.json", json_bytes(manifest(recipe, args, built, hashes), sort_keys=True))
    log.info("wrote %s", out / "bundle.json")


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    args = parse_args(argv)
    recipe = RECIPES[args.arch]
    configure_tensorflow(args.seed)
    split = load_split(args.seed)
    write_heldout(split, HELDOUT_PATH)
    built = build(recipe, args, split)
    write_bundle(recipe, args, built)
    return 0


if __name__ == "__main__":
    sys.exit(main())
