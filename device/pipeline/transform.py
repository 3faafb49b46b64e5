"""Standardize + PCA from plain numpy arrays (`transform.npz`), fused into one affine map.

z = (x - mean) / scale; y = (z - pca_mean) @ components.T  ==  x @ W + b, precomputed once.

Both are computed in float64 and stored in float32. `components` is kept as stored (float32 in a bundle): the
bias takes a float64 copy of it only while it is computed, and W is divided straight into its float32 home (the
ufunc casts in small buffers), so loading holds about one more copy of the matrix than it keeps, not four.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from device.errors import BundleError
from device.pipeline.hugepages import huge_page_empty

_KEYS = ("mean", "scale", "components", "pca_mean")


class FeatureTransform:
    """Maps raw feature vectors (d,) or (n, d) to PCA space (k,) or (n, k), float32."""

    def __init__(self, mean: np.ndarray, scale: np.ndarray, components: np.ndarray, pca_mean: np.ndarray):
        d = mean.shape[0]
        if scale.shape != (d,) or pca_mean.shape != (d,) or components.ndim != 2 or components.shape[1] != d:
            raise ValueError(
                f"inconsistent shapes: mean {mean.shape}, scale {scale.shape}, "
                f"components {components.shape}, pca_mean {pca_mean.shape}"
            )
        if not np.all(np.isfinite(scale)) or np.any(scale == 0):
            raise ValueError("scale must be finite and non-zero")
        self.input_dim = d
        self.output_dim = components.shape[0]
        mean, scale, pca_mean = (np.asarray(a, dtype=np.float64) for a in (mean, scale, pca_mean))
        centre = -(mean / scale + pca_mean)
        self._bias = (centre @ components.astype(np.float64, copy=False).T).astype(np.float32)
        # (components.T / scale) in float64, rounded once to float32: as astype(float32) of the float64 quotient
        self._weight = huge_page_empty((d, self.output_dim), np.float32)
        np.divide(components.T, scale[:, None], out=self._weight, dtype=np.float64, casting="same_kind")

    def close(self) -> None:
        """Free W and b until `reopen` (a closed transform maps nothing)."""
        self._weight = self._bias = np.empty(0, dtype=np.float32)

    def reopen(self, path: str | Path) -> None:
        """Read W and b again from `path` after `close` (the caller checked the file)."""
        loaded = FeatureTransform.load(path)
        if (loaded.input_dim, loaded.output_dim) != (self.input_dim, self.output_dim):
            raise BundleError("the transform changed since it was loaded", path)
        self._weight, self._bias = loaded._weight, loaded._bias

    @classmethod
    def load(cls, path: str | Path) -> FeatureTransform:
        """Read `transform.npz`; a missing key or a shape mismatch is a `BundleError`."""
        try:
            with np.load(path, allow_pickle=False) as npz:
                missing = [k for k in _KEYS if k not in npz]
                if missing:
                    raise BundleError(f"missing arrays {missing}", path)
                arrays = {k: npz[k] for k in _KEYS}
            for key, array in arrays.items():  # components stay float32 (see the module's docstring)
                if array.dtype.kind != "f" or (key != "components" and array.dtype != np.float64):
                    arrays[key] = array.astype(np.float64)
        except BundleError:
            raise
        except (OSError, ValueError) as exc:
            raise BundleError(f"cannot read transform: {exc}", path) from exc
        try:
            return cls(**arrays)
        except ValueError as exc:
            raise BundleError(str(exc), path) from exc

    def __call__(self, features: np.ndarray) -> np.ndarray:
        out: np.ndarray = features.astype(np.float32, copy=False).dot(self._weight)
        out += self._bias
        return out
