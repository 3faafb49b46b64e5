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
