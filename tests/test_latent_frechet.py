"""Fréchet distance against closed forms and scipy; digits helpers against exact values."""

import math

import numpy as np
import pytest

from adasym_jax.latent.digits import NUM_LEVELS, dequantize, discrete_bits_per_dim, load_digits_split, to_unit
from adasym_jax.latent.frechet import feature_stats, frechet_distance, frechet_from_features, sqrtm_psd


def _random_psd(rng, k):
    a = rng.normal(size=(k, k))
    return a @ a.T + 0.1 * np.eye(k)


def test_diagonal_gaussians_match_closed_form():
    rng = np.random.default_rng(0)
    mu1, mu2 = rng.normal(size=5), rng.normal(size=5)
    s1, s2 = rng.uniform(0.2, 2.0, 5), rng.uniform(0.2, 2.0, 5)
    want = np.sum((mu1 - mu2) ** 2) + np.sum((s1 - s2) ** 2)  # W2² of diagonal Gaussians
    assert frechet_distance(mu1, np.diag(s1**2), mu2, np.diag(s2**2)) == pytest.approx(want, rel=1e-9)


def test_general_covariances_match_scipy_sqrtm():
    from scipy.linalg import sqrtm

    rng = np.random.default_rng(1)
    c1, c2 = _random_psd(rng, 6), _random_psd(rng, 6)
    mu1, mu2 = rng.normal(size=6), rng.normal(size=6)
    want = np.sum((mu1 - mu2) ** 2) + np.trace(c1 + c2 - 2.0 * np.real(sqrtm(c1 @ c2)))
    assert frechet_distance(mu1, c1, mu2, c2) == pytest.approx(want, rel=1e-7)
    assert frechet_distance(mu1, c1, mu1, c1) == pytest.approx(0.0, abs=1e-8)
    s = sqrtm_psd(c1)
    np.testing.assert_allclose(s @ s, c1, atol=1e-9)


def test_from_features_and_bad_shapes():
    rng = np.random.default_rng(2)
    a = rng.normal(size=(4000, 3))
    b = rng.normal(size=(4000, 3)) + np.array([3.0, 0.0, 0.0])
    assert frechet_from_features(a, b) == pytest.approx(9.0, abs=0.3)
    mu, cov = feature_stats(a)
    assert mu.shape == (3,) and cov.shape == (3, 3)
    with pytest.raises(ValueError):
        frechet_distance(np.zeros(2), np.eye(2), np.zeros(3), np.eye(3))
    with pytest.raises(ValueError):
        feature_stats(np.full((5, 2), np.nan))


def test_digits_split_and_scalings():
    s = load_digits_split(test_fraction=0.2, seed=0)
    assert s.train_pixels.shape == (1438, 8, 8, 1) and s.test_pixels.shape == (359, 8, 8, 1)
    assert len(set(s.train_labels.tolist())) == 10
    x = to_unit(s.train_pixels)
    assert x.min() > -1.0 and x.max() < 1.0
    deq = np.stack([dequantize(s.train_pixels[:50], seed) for seed in range(200)])
    np.testing.assert_allclose(deq.mean(0), x[:50], atol=0.02)  # bin centre = mean of dequantization
    # a uniform density on [-1, 1]^d is the uniform over 17 levels: log2(17) bits per pixel
    d = 64
    assert discrete_bits_per_dim(d * math.log(2.0), d) == pytest.approx(math.log2(NUM_LEVELS))
