"""AutoregressiveSplineFlow (zuko NSF's structure): the same invariants as the coupling flow,
plus the autoregressive structure (triangular Jacobian in the layer's order) and the MADE masks.

Numerics are checked in float64 where a round trip with random (non-init-scale) weights is
compared, and in float32 at small perturbations otherwise (as for the couplings)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import adasym_jax as aj
from adasym_jax.autoregressive import AutoregressiveSplineFlow, layer_orders, made_masks


def _perturbed(flow, key, scale=0.3, context_dim=0, dtype=jnp.float32):
    x0 = jnp.zeros((1, flow.dim), dtype)
    c0 = jnp.zeros((1, context_dim), dtype) if context_dim else None
    params = flow.init(jax.random.PRNGKey(0), x0, c0)["params"]
    leaves, tree = jax.tree.flatten(params)
    keys = jax.random.split(key, len(leaves))
    leaves = [jnp.asarray(p, dtype) + scale * jax.random.normal(k, p.shape, dtype) for p, k in zip(leaves, keys)]
    return {"params": jax.tree.unflatten(tree, leaves)}


@pytest.fixture(scope="module")
def ar2d():
    flow = AutoregressiveSplineFlow(dim=2, num_transforms=3, num_bins=6, hidden=(16, 16), bound=4.0)
    # small perturbations: larger ones make densities too spiky for a 601² quadrature grid
    return flow, _perturbed(flow, jax.random.PRNGKey(1), scale=0.1)


def _grid(lo, hi, n):
    g = np.linspace(lo, hi, n)
    xx, yy = np.meshgrid(g, g)
    return jnp.asarray(np.stack([xx.ravel(), yy.ravel()], 1), jnp.float32), (g[1] - g[0]) ** 2


def test_density_integrates_to_one(ar2d):
    flow, v = ar2d
    grid, area = _grid(-7.0, 7.0, 601)
    log_p = flow.apply(v, grid, method=flow.log_prob)
    mass = float(jnp.sum(jnp.exp(log_p)) * area)
    assert abs(mass - 1.0) < 0.01, mass
    assert float(jnp.max(jnp.abs(log_p - flow.base_log_prob(grid)))) > 0.1  # not the base density


def test_conditional_density_integrates_to_one_at_each_context_and_depends_on_it():
    flow = AutoregressiveSplineFlow(dim=2, num_transforms=2, num_bins=4, hidden=(16,), bound=4.0, context_dim=3)
    v = _perturbed(flow, jax.random.PRNGKey(6), scale=0.1, context_dim=3)
    grid, area = _grid(-7.0, 7.0, 501)
    dens = []
    for c in ([0.0, 0.0, 0.0], [1.5, -1.0, 2.0]):
        p = jnp.exp(flow.apply(v, grid, jnp.asarray([c]), method=flow.log_prob))
        assert abs(float(jnp.sum(p) * area) - 1.0) < 0.01
        dens.append(p)
    assert float(jnp.max(jnp.abs(dens[0] - dens[1]))) > 1e-2


@pytest.mark.parametrize("dim,context_dim", [(1, 0), (2, 0), (3, 2), (10, 0)])
def test_sampling_inverts_the_density_direction_float64(dim, context_dim):
    with jax.enable_x64(True):
        flow = AutoregressiveSplineFlow(dim=dim, num_transforms=3, num_bins=5, hidden=(16, 16), bound=4.0, context_dim=context_dim)
        v = _perturbed(flow, jax.random.PRNGKey(2), context_dim=context_dim, dtype=jnp.float64)
        ctx = jnp.full((200, context_dim), 0.4) if context_dim else None
        x, lp = flow.apply(v, jax.random.PRNGKey(3), 200, ctx, method=flow.sample_and_log_prob)
        assert x.shape == (200, dim) and x.dtype == jnp.float64
        np.testing.assert_allclose(flow.apply(v, x, ctx, method=flow.log_prob), lp, atol=1e-9)
        z, _ = flow.apply(v, x, ctx, method=flow.__call__)
        x_back, _ = flow.apply(v, z, ctx, inverse=True, method=flow.__call__)
        np.testing.assert_allclose(x_back, x, atol=1e-9)
        # the flow is not the identity
        assert float(jnp.max(jnp.abs(lp - flow.base_log_prob(x)))) > 0.1


def test_log_det_matches_autodiff_jacobian(ar2d):
    flow, v = ar2d
    x = 2.0 * jax.random.normal(jax.random.PRNGKey(3), (20, 2))
    to_base = lambda xi: flow.apply(v, xi[None], method=flow.__call__)[0][0]  # noqa: E731
    z = jax.vmap(to_base)(x)
    jac = jax.vmap(jax.jacfwd(to_base))(x)
    expected = flow.base_log_prob(z) + jnp.log(jnp.abs(jnp.linalg.det(jac)))
    np.testing.assert_allclose(flow.apply(v, x, method=flow.log_prob), expected, atol=1e-4)


@pytest.mark.parametrize("context_dim", [0, 2])
def test_one_layer_jacobian_is_triangular_in_its_order(context_dim):
    dim = 4
    flow = AutoregressiveSplineFlow(dim=dim, num_transforms=1, num_bins=5, hidden=(12, 12), bound=4.0, context_dim=context_dim)
    v = _perturbed(flow, jax.random.PRNGKey(4), context_dim=context_dim)
    ctx = jnp.ones((1, context_dim)) if context_dim else None
    f = lambda xi: flow.apply(v, xi[None], ctx, method=flow.__call__)[0][0]  # noqa: E731
    seen = np.zeros((dim, dim))
    for xi in jax.random.normal(jax.random.PRNGKey(5), (8, dim)):
        jac = np.asarray(jax.jacfwd(f)(xi))  # jac[i, j] = dz_i / dx_j; layer 0's order is 0, 1, ..., dim-1
        assert np.all(jac[np.triu_indices(dim, 1)] == 0.0), jac
        seen = np.maximum(seen, np.abs(jac))
    # every allowed dependency is really there somewhere (ReLU units can be dead at one point)
    assert np.all(seen[np.tril_indices(dim, -1)] > 1e-6), seen
    # a two-layer flow mixes both ways (layer 1 runs in the reversed order)
    flow2 = flow.clone(num_transforms=2)
    v2 = _perturbed(flow2, jax.random.PRNGKey(7), context_dim=context_dim)
    jac2 = np.asarray(jax.jacfwd(lambda xi: flow2.apply(v2, xi[None], ctx, method=flow2.__call__)[0][0])(jnp.ones(dim)))
    assert np.abs(jac2[0, dim - 1]) > 1e-6 and np.abs(jac2[dim - 1, 0]) > 1e-6


def test_made_masks_connect_exactly_the_earlier_coordinates():
    dim, p = 5, 3
    for order in layer_orders(dim, 2):
        for ctx in (0, 2):
            masks = made_masks(dim, ctx, (7, 9), order, p)
            conn = masks[0]
            for m in masks[1:]:
                conn = (conn @ m > 0).astype(np.float32)
            rank = np.argsort(order)
            for i in range(dim):
                cols = conn[:, i * p : (i + 1) * p]
                for j in range(dim):
                    assert bool(cols[j].any()) == (rank[j] < rank[i]), (order, i, j)
                if ctx:  # the context reaches every coordinate, the first in the order included
                    assert cols[dim:].all()


def test_gradients_finite_far_outside_the_bound(ar2d):
    flow, v = ar2d
    x = jnp.array([[1e6, -1e6], [-1e3, 2.0], [0.5, 1e4], [4.0, -4.0]])
    g = jax.grad(lambda vv: jnp.sum(flow.apply(vv, x, method=flow.log_prob)))(v)
    assert all(bool(jnp.all(jnp.isfinite(leaf))) for leaf in jax.tree.leaves(g))
    lp = flow.apply(v, x, method=flow.log_prob)
    assert bool(jnp.all(jnp.isfinite(lp)))


def test_fresh_flow_is_the_identity_on_the_base():
    flow = AutoregressiveSplineFlow(dim=3, num_transforms=2, num_bins=4, hidden=(8,), bound=3.0)
    v = flow.init(jax.random.PRNGKey(0), jnp.zeros((1, 3)))
    x = jax.random.normal(jax.random.PRNGKey(1), (10, 3))
    np.testing.assert_allclose(flow.apply(v, x, method=flow.log_prob), flow.base_log_prob(x), atol=1e-6)


def test_config_picks_the_flow_and_exports_it(tiny_config):
    ar, _ = aj.build_models(tiny_config.replace(flow="autoregressive"), 2)
    cp, _ = aj.build_models(tiny_config.replace(flow="coupling"), 2)
    assert isinstance(ar, AutoregressiveSplineFlow) and type(cp) is aj.SplineFlow
    assert aj.TrainConfig().flow == "autoregressive"  # the paper's capacity by default
    v = _perturbed(ar, jax.random.PRNGKey(8))
    dist = aj.to_distrax(ar, v)
    x = jax.random.normal(jax.random.PRNGKey(9), (7, 2))
    np.testing.assert_allclose(dist.log_prob(x), ar.apply(v, x, method=ar.log_prob), rtol=1e-6, atol=1e-6)
    with pytest.raises(ValueError, match="flow"):
        tiny_config.replace(flow="made")


def test_bad_input_is_rejected(ar2d):
    flow, v = ar2d
    with pytest.raises(ValueError, match="columns"):
        flow.apply(v, jnp.zeros((4, 3)), method=flow.log_prob)
    with pytest.raises(ValueError, match="NaN"):
        flow.apply(v, jnp.array([[0.0, np.nan]]), method=flow.log_prob)
    with pytest.raises(ValueError, match="context"):
        flow.apply(v, jnp.zeros((4, 2)), jnp.zeros((4, 3)), method=flow.log_prob)
