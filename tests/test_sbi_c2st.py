"""C2ST protocols: indistinguishable samples score ≈ 0.5, separable ones ≈ 1."""

import numpy as np
import pytest

pytest.importorskip("sklearn")

from adasym_jax.sbi.c2st import c2st_mlp, c2st_paper  # noqa: E402


@pytest.mark.parametrize("fn,n", [(c2st_paper, 600), (c2st_mlp, 300)])
def test_c2st_extremes(fn, n):
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(n, 2)), rng.normal(size=(n, 2))
    assert abs(fn(a, b) - 0.5) < 0.08
    assert fn(a, b + np.array([6.0, 0.0])) > 0.98  # Bayes accuracy Φ(3) = 0.9987
    # Shift 1: the Bayes accuracy is Φ(0.5) = 0.69.
    mid = fn(a, b + np.array([1.0, 0.0]))
    assert 0.6 < mid < 0.8


def test_c2st_rejects_bad_input():
    a = np.zeros((50, 2))
    with pytest.raises(ValueError, match="same d"):
        c2st_paper(a, np.zeros((50, 3)))
    with pytest.raises(ValueError, match="NaN"):
        c2st_paper(a, np.full((50, 2), np.nan))


def test_batched_mlp_c2st_agrees_with_sklearn_and_with_the_bayes_accuracy():
    """c2st_mlp_batch (JAX, all folds of all pairs at once) against c2st_mlp (sklearn) and the
    Bayes accuracy of two Gaussians shifted by s: Φ(s/2). Random streams differ, so the two
    agree to classifier noise, not exactly."""
    from scipy.stats import norm

    from adasym_jax.sbi.c2st import c2st_mlp_batch

    rng = np.random.default_rng(1)
    n, shifts = 600, np.array([0.0, 0.6, 1.2, 6.0])
    refs = rng.normal(size=(len(shifts), n, 2))
    mods = rng.normal(size=(len(shifts), n, 2)) + shifts[:, None, None] * np.array([1.0, 0.0])
    batched = c2st_mlp_batch(refs, mods, seeds=np.arange(len(shifts)))
    one_by_one = np.array([c2st_mlp(r, m, seed=i) for i, (r, m) in enumerate(zip(refs, mods))])
    bayes = np.maximum(norm.cdf(shifts / 2), 0.5)
    np.testing.assert_allclose(batched, one_by_one, atol=0.03)
    np.testing.assert_allclose(batched, bayes, atol=0.05)
    assert np.all(np.diff(batched) > 0)  # more shift, more separable
    with pytest.raises(ValueError, match="divisible"):
        c2st_mlp_batch(refs[:, :-1], mods, seeds=0)
