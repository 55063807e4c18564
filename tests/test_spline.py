"""Rational-quadratic spline: inverse, log-det, distrax agreement, out-of-bound safety.

Numerics are checked in float64 (``jax.enable_x64``) with random parameters of scale 2;
the identity-at-zero check runs in float32.
"""

import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from adasym_jax.spline import num_spline_params, rqs_forward, rqs_inverse, spline_knots

B = 3.0
K = 6


def _params(key, shape, scale=2.0):
    return scale * jax.random.normal(key, shape + (num_spline_params(K),))


@pytest.fixture
def x64():
    with jax.enable_x64(True):
        yield


def _inputs(n=400):
    # inside, on the knots' range edges, and far outside [-B, B]
    inside = np.linspace(-B, B, n)
    outside = np.array([-1e4, -50.0, -B - 1e-3, B + 1e-3, 7.5, 1e6])
    return jnp.asarray(np.concatenate([inside, outside]))


def test_round_trip_and_log_dets_cancel(x64):
    x = _inputs()
    p = _params(jax.random.PRNGKey(0), x.shape).astype(jnp.float64)
    y, ld = rqs_forward(x, p, B)
    x2, ld_inv = rqs_inverse(y, p, B)
    np.testing.assert_allclose(x2, x, atol=1e-9, rtol=1e-9)
    np.testing.assert_allclose(ld + ld_inv, 0.0, atol=1e-9)
    # the spline maps [-B, B] onto itself and is the identity outside
    assert np.all(np.abs(y[: 400]) <= B + 1e-12)
    np.testing.assert_array_equal(y[400:], x[400:])
    np.testing.assert_array_equal(ld[400:], 0.0)


def test_log_det_matches_autodiff(x64):
    x = _inputs()
    p = _params(jax.random.PRNGKey(1), x.shape).astype(jnp.float64)
    dydx = jax.vmap(jax.jacfwd(lambda xi, pi: rqs_forward(xi, pi, B)[0]))(x, p)
    _, ld = rqs_forward(x, p, B)
    np.testing.assert_allclose(ld, jnp.log(jnp.abs(dydx)), atol=1e-8)
    dxdy = jax.vmap(jax.jacfwd(lambda yi, pi: rqs_inverse(yi, pi, B)[0]))(x, p)
    _, ld_inv = rqs_inverse(x, p, B)
    np.testing.assert_allclose(ld_inv, jnp.log(jnp.abs(dxdy)), atol=1e-8)


def test_monotone_and_continuous_derivative_at_the_bound(x64):
    p = _params(jax.random.PRNGKey(2), ())
    x = jnp.linspace(-B - 0.5, B + 0.5, 2001)
    y, ld = rqs_forward(x, jnp.broadcast_to(p, x.shape + p.shape), B)
    assert np.all(np.diff(np.asarray(y)) > 0)
    # boundary slopes are 1: log-det -> 0 at ±B from inside
    _, ld_edge = rqs_forward(jnp.array([-B, B]), jnp.stack([p, p]), B)
    np.testing.assert_allclose(ld_edge, 0.0, atol=1e-9)


def test_zero_params_give_identity():
    x = jnp.linspace(-2 * B, 2 * B, 101)
    y, ld = rqs_forward(x, jnp.zeros(x.shape + (num_spline_params(K),)), B)
    np.testing.assert_allclose(y, x, atol=1e-5)
    np.testing.assert_allclose(ld, 0.0, atol=1e-5)


def test_agrees_with_distrax(x64):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        import distrax
    min_size = 1e-3
    p = _params(jax.random.PRNGKey(3), ()).astype(jnp.float64)
    # distrax layout: K width logits, K height logits, K+1 slope logits (boundary ones ignored
    # with boundary_slopes="identity"); its min bin size is absolute, ours is a fraction of 2B.
    d_params = jnp.concatenate([p[: 2 * K], jnp.zeros(1), p[2 * K :], jnp.zeros(1)])
    bij = distrax.RationalQuadraticSpline(
        d_params, range_min=-B, range_max=B, boundary_slopes="identity",
        min_bin_size=2 * B * min_size, min_knot_slope=1e-3,
    )
    x = jnp.linspace(-B - 1.0, B + 1.0, 301)
    y_ref, ld_ref = jax.vmap(bij.forward_and_log_det)(x)
    y, ld = rqs_forward(x, jnp.broadcast_to(p, x.shape + p.shape), B, min_bin_width=min_size, min_bin_height=min_size)
    np.testing.assert_allclose(y, y_ref, atol=1e-10)
    np.testing.assert_allclose(ld, ld_ref, atol=1e-8)
    x_ref, ldi_ref = jax.vmap(bij.inverse_and_log_det)(x)
    x_ours, ldi = rqs_inverse(x, jnp.broadcast_to(p, x.shape + p.shape), B, min_bin_width=min_size, min_bin_height=min_size)
    np.testing.assert_allclose(x_ours, x_ref, atol=1e-10)
    np.testing.assert_allclose(ldi, ldi_ref, atol=1e-8)


def test_gradients_finite_far_outside_the_bound():
    p = _params(jax.random.PRNGKey(4), (6,))
    x = jnp.array([-1e8, -1e3, -B, B, 1e3, 1e8])

    def loss(pp, xx):
        y, ld = rqs_forward(xx, pp, B)
        xi, ldi = rqs_inverse(xx, pp, B)
        return jnp.sum(y + ld + xi + ldi)

    gp, gx = jax.grad(loss, argnums=(0, 1))(p, x)
    assert np.all(np.isfinite(gp)) and np.all(np.isfinite(gx))
    # outside the bound the map is the identity, so d/dx (y + x_inv) = 2 there
    np.testing.assert_allclose(np.asarray(gx)[[0, 1, 4, 5]], 2.0)


def test_knots_respect_minimums_and_bounds():
    p = 50.0 * jax.random.normal(jax.random.PRNGKey(5), (10, num_spline_params(K)))
    kn = spline_knots(p, B, 1e-2, 1e-2, 1e-2)
    assert np.all(np.diff(kn.xs) >= 2 * B * 1e-2 * (1 - 1e-4))
    assert np.all(kn.ds >= 1e-2)
    np.testing.assert_allclose(kn.xs[:, [0, -1]], [[-B, B]] * 10)
    np.testing.assert_allclose(kn.ds[:, [0, -1]], 1.0)


def test_rejects_malformed_params():
    with pytest.raises(ValueError, match="3K-1"):
        rqs_forward(jnp.zeros(3), jnp.zeros((3, 7)), B)
