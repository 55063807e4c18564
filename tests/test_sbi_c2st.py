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
