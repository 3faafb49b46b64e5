"""TFLite feature extractor: one `invoke` gives class probabilities and the feature vector.

The interpreter comes from `ai_edge_litert` where it exists and from `tflite_runtime` on armv7;
output tensors are found by the names `bundle.json` gives their roles, never by position.
"""

from __future__ import annotations

import logging
import math
from typing import Any

import numpy as np

from contract.bundle import Bundle, TensorSpec
from device.errors import BundleError, FrameError

log = logging.getLogger(__name__)


def interpreter_class() -> Any:
    """The `Interpreter` class of the first TFLite runtime that imports."""
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError:
        try:
            from tflite_runtime.interpreter import Interpreter
        except ImportError as exc:
            raise BundleError("no TFLite runtime: install ai-edge-litert or tflite-runtime") from exc
    return Interpreter


def _dequantizer(detail: dict[str, Any]) -> tuple[int, int, np.float32 | None]:
    """(tensor index, zero point, scale or None) of an output, looked up once instead of per frame."""
    scale, zero = detail["quantization"]
    return int(detail["index"]), zero, np.float32(scale) if scale else None


def _find(details: list[dict[str, Any]], spec: TensorSpec, role: str, model: str) -> dict[str, Any]:
    for d in details:
        if d["name"] == spec.name:
            shape = tuple(int(x) for x in d["shape"])
            dtype = np.dtype(d["dtype"]).name
            if shape != spec.shape or dtype != spec.dtype:
                raise BundleError(
                    f"{role} tensor {spec.name!r} is {dtype}{list(shape)} in the model, "
                    f"bundle.json says {spec.dtype}{list(spec.shape)}",
                    model,
                )
            return d
    names = [d["name"] for d in details]
    raise BundleError(f"bundle.json names {role} tensor {spec.name!r}; the model has {names}", model)


class Extractor:
    """Runs the bundle's model on one RGB uint8 frame: (probabilities, features), both float32."""

    def __init__(self, bundle: Bundle, num_threads: int = 1) -> None:
        model = self._model = str(bundle.file("model.tflite"))
        self._num_threads = num_threads
        self._interp: Any = self._open()
        self._in = _find(self._interp.get_input_details(), bundle.input, "input", model)
        outs = self._interp.get_output_details()
        self._probs = _find(outs, bundle.outputs["probabilities"], "probabilities", model)
        self._feats = _find(outs, bundle.outputs["features"], "features", model)
        self.input_shape: tuple[int, ...] = bundle.input.shape
        self._frame_shape = self.input_shape[1:]
        self.feature_dim = int(bundle.outputs["features"].shape[-1])
        scale, zero = self._in["quantization"]
        self._raw_input = self._in["dtype"] == np.uint8 and (scale, zero) in ((0.0, 0), (1.0, 0))
        self._in_q = (float(scale), int(zero))
        self._deq_probs, self._deq_feats = _dequantizer(self._probs), _dequantizer(self._feats)
        # An integer tensor with a finite scale dequantizes to finite numbers: no per-frame check needed.
        self.finite_features = bool(np.issubdtype(self._feats["dtype"], np.integer)) and math.isfinite(
            float(self._feats["quantization"][0])
        )

    def close(self) -> None:
        """Free the interpreter (its tensor arena and the model's packed weights) until `reopen`."""
        self._interp = None

    def reopen(self) -> None:
        """Build the interpreter again after `close`, from the same model file (the caller checked it)."""
        self._interp = self._open()

    def _open(self) -> Any:
        try:
            interp = interpreter_class()(model_path=self._model, num_threads=self._num_threads)
            interp.allocate_tensors()
        except (ValueError, RuntimeError) as exc:
            raise BundleError(f"the TFLite runtime cannot load the model: {exc}", self._model) from exc
        return interp

    def preprocess(self, image: np.ndarray) -> np.ndarray:
        """Frame (H, W, 3) uint8 -> the input tensor, quantized as the model expects."""
        if image.shape != self._frame_shape or image.dtype != np.uint8:
            want = list(self.input_shape[1:])
            raise FrameError(f"frame is {image.dtype}{list(image.shape)}, the model takes uint8{want}")
        if self._raw_input:
            return image[None]
        scale, zero = self._in_q
        info = np.iinfo(self._in["dtype"]) if np.issubdtype(self._in["dtype"], np.integer) else None
        if info is None:
            return image[None].astype(self._in["dtype"])
        q = np.round(image.astype(np.float32) / scale + zero)
        return np.clip(q, info.min, info.max).astype(self._in["dtype"])[None]

    def run(self, image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Invoke the model on one frame: its raw (still quantized) outputs, copied out of the interpreter."""
        self.invoke(self.preprocess(image))
        return self._interp.get_tensor(self._deq_probs[0]), self._interp.get_tensor(self._deq_feats[0])

    def dequantize(self, raw: tuple[np.ndarray, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        """Raw outputs -> (probabilities, features) in float32 (two in-place numpy ops each)."""
        return _dequantize(raw[0][0], self._deq_probs), _dequantize(raw[1][0], self._deq_feats)

    def invoke(self, tensor: np.ndarray) -> None:
        self._interp.set_tensor(self._in["index"], tensor)
        self._interp.invoke()

    def __call__(self, image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return self.dequantize(self.run(image))


def _dequantize(values: np.ndarray, dequantizer: tuple[int, int, np.float32 | None]) -> np.ndarray:
    _, zero, scale = dequantizer
    out = np.subtract(values, zero, dtype=np.float32)
    if scale is not None:
        out *= scale
    return out
