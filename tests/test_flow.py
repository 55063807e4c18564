"""SplineFlow: consistency of sampling and density, normalization, conditioning, bad input."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from adasym_jax import SplineFlow


def _perturbed(flow, key, scale=0.2, context_dim=0):
    x0 = jnp.zeros((1, flow.dim))
    c0 = jnp.zeros((1, context_dim)) if context_dim else None
    params = flow.init(jax.random.PRNGKey(0), x0, c0)["params"]
    leaves, tree = jax.tree.flatten(params)
    keys = jax.random.split(key, len(leaves))
    # non-identity flow: random weights everywhere (the last layer starts at zero otherwise)
    leaves = [p + scale * jax.random.normal(k, p.shape) for p, k in zip(leaves, keys)]
    return {"params": jax.tree.unflatten(tree, leaves)}


@pytest.fixture(scope="module")
def flow2d():
    flow = SplineFlow(dim=2, num_transforms=3, num_bins=6, hidden=(16, 16), bound=4.0)
    return flow, _perturbed(flow, jax.random.PRNGKey(1))


def _grid(lo, hi, n):
    g = np.linspace(lo, hi, n)
    xx, yy = np.meshgrid(g, g)
    return jnp.asarray(np.stack([xx.ravel(), yy.ravel()], 1), jnp.float32), (g[1] - g[0]) ** 2


def test_sample_and_log_prob_consistent(flow2d):
    # float64: with random (non-init-scale) weights float32 round trips drift by ~1e-3
    flow, v = flow2d
    # float32 agrees to round-off
    x32, lp32 = flow.apply(v, jax.random.PRNGKey(2), 500, method=flow.sample_and_log_prob)
    np.testing.assert_allclose(lp32, flow.apply(v, x32, method=flow.log_prob), atol=5e-3)
    with jax.enable_x64(True):
        v64 = jax.tree.map(lambda a: jnp.asarray(a, jnp.float64), v)
        x, lp = flow.apply(v64, jax.random.PRNGKey(2), 500, method=flow.sample_and_log_prob)
        assert x.shape == (500, 2) and lp.shape == (500,) and x.dtype == jnp.float64
        lp2 = flow.apply(v64, x, method=flow.log_prob)
        np.testing.assert_allclose(lp, lp2, atol=1e-9)
    # the flow is not the identity: the density differs from the base density
    assert np.max(np.abs(lp32 - flow.base_log_prob(x32))) > 0.1


def test_log_prob_matches_autodiff_change_of_variables(flow2d):
    flow, v = flow2d
    x = 2.0 * jax.random.normal(jax.random.PRNGKey(3), (20, 2))
    to_base = lambda xi: flow.apply(v, xi[None], method=flow.__call__)[0][0]  # noqa: E731
    z = jax.vmap(to_base)(x)
    jac = jax.vmap(jax.jacfwd(to_base))(x)
    expected = flow.base_log_prob(z) + jnp.log(jnp.abs(jnp.linalg.det(jac)))
    np.testing.assert_allclose(flow.apply(v, x, method=flow.log_prob), expected, atol=1e-4)


def test_density_integrates_to_one(flow2d):
    flow, v = flow2d
    grid, area = _grid(-7.0, 7.0, 601)
    mass = float(jnp.sum(jnp.exp(flow.apply(v, grid, method=flow.log_prob))) * area)
    assert abs(mass - 1.0) < 0.01, mass


def test_one_dimensional_flow_normalized_and_invertible():
    flow = SplineFlow(dim=1, num_transforms=2, num_bins=5, hidden=(8,), bound=3.0)
    v = _perturbed(flow, jax.random.PRNGKey(4), scale=0.8)
    g = jnp.linspace(-9.0, 9.0, 20001)[:, None]
    mass = float(jnp.sum(jnp.exp(flow.apply(v, g, method=flow.log_prob))) * (g[1, 0] - g[0, 0]))
    assert abs(mass - 1.0) < 1e-3, mass
    x, lp = flow.apply(v, jax.random.PRNGKey(5), 100, method=flow.sample_and_log_prob)
    assert x.shape == (100, 1)
    np.testing.assert_allclose(lp, flow.apply(v, x, method=flow.log_prob), atol=5e-3)


@pytest.fixture(scope="module")
def cond_flow():
    flow = SplineFlow(dim=2, num_transforms=2, num_bins=4, hidden=(16,), bound=4.0, context_dim=3)
    return flow, _perturbed(flow, jax.random.PRNGKey(6), scale=0.2, context_dim=3)


def test_conditional_flow_each_context_normalized_and_different(cond_flow):
    flow, v = cond_flow
    grid, area = _grid(-7.0, 7.0, 601)
    densities = []
    for c in ([0.0, 0.0, 0.0], [1.5, -1.0, 2.0]):
        ctx = jnp.asarray([c], jnp.float32)  # one row, broadcast over the grid
        p = jnp.exp(flow.apply(v, grid, ctx, method=flow.log_prob))
        assert abs(float(jnp.sum(p) * area) - 1.0) < 0.01
        densities.append(p)
    assert float(jnp.max(jnp.abs(densities[0] - densities[1]))) > 1e-2


def test_conditional_sampling_at_one_context(cond_flow):
    flow, v = cond_flow
    ctx = jnp.asarray([[1.0, 0.5, -0.5]])
    x, lp = flow.apply(v, jax.random.PRNGKey(7), 300, ctx, method=flow.sample_and_log_prob)
    assert x.shape == (300, 2)
    np.testing.assert_allclose(lp, flow.apply(v, x, ctx, method=flow.log_prob), atol=5e-3)
    # a row-wise context of the same value gives the same densities
    rows = jnp.broadcast_to(ctx, (300, 3))
    np.testing.assert_allclose(flow.apply(v, x, rows, method=flow.log_prob), lp, atol=2e-4)


def test_bad_input_is_rejected_before_compilation(flow2d, cond_flow):
    flow, v = flow2d
    with pytest.raises(ValueError, match="shape"):
        flow.apply(v, jnp.zeros((4,)), method=flow.log_prob)
    with pytest.raises(ValueError, match="columns"):
        flow.apply(v, jnp.zeros((4, 3)), method=flow.log_prob)
    with pytest.raises(ValueError, match="NaN"):
        flow.apply(v, jnp.array([[0.0, np.nan]]), method=flow.log_prob)
    with pytest.raises(ValueError, match="empty"):
        flow.apply(v, jnp.zeros((0, 2)), method=flow.log_prob)
    with pytest.raises(ValueError, match="context"):
        flow.apply(v, jnp.zeros((4, 2)), jnp.zeros((4, 3)), method=flow.log_prob)
    cflow, cv = cond_flow
    with pytest.raises(ValueError, match="context"):
        cflow.apply(cv, jnp.zeros((4, 2)), method=cflow.log_prob)
    with pytest.raises(ValueError, match="context"):
        cflow.apply(cv, jnp.zeros((4, 2)), jnp.zeros((4, 2)), method=cflow.log_prob)
    with pytest.raises(ValueError, match="rows"):
        cflow.apply(cv, jnp.zeros((4, 2)), jnp.zeros((3, 3)), method=cflow.log_prob)


def test_log_prob_is_jittable(flow2d):
    flow, v = flow2d
    x = jax.random.normal(jax.random.PRNGKey(8), (10, 2))
    f = jax.jit(lambda vv, xx: flow.apply(vv, xx, method=flow.log_prob))
    np.testing.assert_allclose(f(v, x), flow.apply(v, x, method=flow.log_prob), atol=1e-5)
