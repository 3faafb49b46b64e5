import numpy as np
import pytest

from device.errors import BundleError
from device.pipeline.transform import FeatureTransform


def test_fused_transform_equals_standardize_then_pca(tmp_path) -> None:
    rng = np.random.default_rng(0)
    mean, scale = rng.normal(size=12), rng.uniform(0.5, 2, size=12)
    components, pca_mean = rng.normal(size=(4, 12)), rng.normal(size=12) * 0.1
    np.savez(tmp_path / "t.npz", mean=mean, scale=scale, components=components, pca_mean=pca_mean)
    t = FeatureTransform.load(tmp_path / "t.npz")
    x = rng.normal(size=(5, 12)).astype(np.float32)
    want = ((x - mean) / scale - pca_mean) @ components.T
    np.testing.assert_allclose(t(x), want, rtol=1e-4, atol=1e-4)
    assert (t.input_dim, t.output_dim) == (12, 4)


def test_missing_array_is_named(tmp_path) -> None:
    np.savez(tmp_path / "t.npz", mean=np.zeros(3), scale=np.ones(3))
    with pytest.raises(BundleError, match=r"missing arrays \['components', 'pca_mean'\]"):
        FeatureTransform.load(tmp_path / "t.npz")


def test_zero_scale_refused(tmp_path) -> None:
    np.savez(tmp_path / "t.npz", mean=np.zeros(3), scale=np.zeros(3), components=np.eye(3), pca_mean=np.zeros(3))
    with pytest.raises(BundleError, match="non-zero"):
        FeatureTransform.load(tmp_path / "t.npz")


def test_pickled_arrays_refused(tmp_path) -> None:
    np.savez(tmp_path / "t.npz", mean=np.array([{"a": 1}], dtype=object), scale=np.ones(1),
             components=np.eye(1), pca_mean=np.zeros(1))
    with pytest.raises(BundleError, match="cannot read transform"):
        FeatureTransform.load(tmp_path / "t.npz")


def test_float32_bundle_arrays_give_the_float64_products_rounded_once(tmp_path) -> None:
    """A bundle's float32 matrix is not widened at load, and W and b are still the float64 results cast once."""
    rng = np.random.default_rng(2)
    arrays = {k: v.astype(np.float32) for k, v in {
        "mean": rng.normal(size=64), "scale": rng.uniform(0.5, 2, size=64),
        "components": rng.normal(size=(16, 64)), "pca_mean": rng.normal(size=64)}.items()}
    np.savez(tmp_path / "t.npz", **arrays)
    t = FeatureTransform.load(tmp_path / "t.npz")
    wide = {k: v.astype(np.float64) for k, v in arrays.items()}
    widened = FeatureTransform(**wide)  # every array float64, as loads widened them before
    x = rng.normal(size=(3, 64)).astype(np.float32)
    assert np.array_equal(t(x), widened(x)) and np.array_equal(t(x[0]), widened(x[0]))
    bias = (-(wide["mean"] / wide["scale"] + wide["pca_mean"]) @ wide["components"].T).astype(np.float32)
    assert np.array_equal(t(np.zeros(64, dtype=np.float32)), bias)


def test_integer_arrays_are_read_as_float(tmp_path) -> None:
    np.savez(tmp_path / "t.npz", mean=np.arange(3), scale=np.full(3, 2), components=np.eye(3, dtype=np.int64),
             pca_mean=np.zeros(3, dtype=np.int32))
    t = FeatureTransform.load(tmp_path / "t.npz")
    np.testing.assert_array_equal(t(np.array([2.0, 3.0, 4.0], dtype=np.float32)), [1.0, 1.0, 1.0])
