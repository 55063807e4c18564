"""NSFCouplingFlow (sbi's NSF: residual conditioners, an LU linear layer after each coupling):
change of variables against an autodiff Jacobian, normalization on a grid, the sampling round
trip, the LU layer's determinant against numpy's, identity at initialization, and training
through the library's config (``flow="nsf"``).

Round trips are compared in float64 with random (non-init-scale) weights; densities in float32
at small perturbations (as for the other flows)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import adasym_jax as aj
from adasym_jax.flow import NSFCouplingFlow, _LULinear


def _perturbed(flow, key, scale, context_dim=0, dtype=jnp.float32):
    x0 = jnp.zeros((1, flow.dim), dtype)
    c0 = jnp.zeros((1, context_dim), dtype) if context_dim else None
    params = flow.init(jax.random.PRNGKey(0), x0, c0)["params"]
    leaves, tree = jax.tree.flatten(params)
    keys = jax.random.split(key, len(leaves))
    leaves = [jnp.asarray(p, dtype) + scale * jax.random.normal(k, p.shape, dtype) for p, k in zip(leaves, keys)]
    return {"params": jax.tree.unflatten(tree, leaves)}


@pytest.fixture(scope="module")
def nsf_cond():
    flow = NSFCouplingFlow(dim=2, num_transforms=3, num_bins=5, hidden=(16, 16), bound=3.0, context_dim=2)
    return flow, _perturbed(flow, jax.random.PRNGKey(1), scale=0.1, context_dim=2)


def test_fresh_flow_is_the_identity_on_the_base():
    flow = NSFCouplingFlow(dim=3, num_transforms=2, num_bins=4, hidden=(8, 8), context_dim=1)
    x = jax.random.normal(jax.random.PRNGKey(0), (50, 3))
    c = jax.random.normal(jax.random.PRNGKey(1), (50, 1))
    v = flow.init(jax.random.PRNGKey(2), x[:1], c[:1])
    z, log_det = flow.apply(v, x, c)
    np.testing.assert_allclose(z, x, atol=1e-5)
    np.testing.assert_allclose(log_det, 0.0, atol=1e-5)
    # every coupling carries an LU layer and residual blocks (the structure is what we claim)
    p = v["params"]["couplings"]
    assert {"lower", "upper", "diag", "bias"} <= set(p["_LULinear_0"])
    assert "_ResidualConditioner_0" in p


def test_lu_layer_determinant_and_inverse_match_numpy():
    with jax.enable_x64(True):
        lu = _LULinear(4)
        x = jax.random.normal(jax.random.PRNGKey(0), (7, 4), jnp.float64)
        v = lu.init(jax.random.PRNGKey(1), x, inverse=False)
        v = jax.tree.map(lambda a, k: a + 0.7 * jax.random.normal(k, a.shape, jnp.float64), v,
                         jax.tree.unflatten(jax.tree.structure(v), list(jax.random.split(jax.random.PRNGKey(2), len(jax.tree.leaves(v))))))
        y, ld = lu.apply(v, x, inverse=False)
        jac = jax.jacfwd(lambda r: lu.apply(v, r[None], inverse=False)[0][0])(x[0])
        np.testing.assert_allclose(ld, np.log(abs(np.linalg.det(np.asarray(jac)))), rtol=1e-10)
        np.testing.assert_allclose(y, x @ np.asarray(jac).T + (y[0] - x[0] @ np.asarray(jac).T), atol=1e-10)  # affine
        back, ld_inv = lu.apply(v, y, inverse=True)
        np.testing.assert_allclose(back, x, atol=1e-10)
        np.testing.assert_allclose(ld_inv, -ld, atol=1e-12)


def test_log_prob_matches_autodiff_change_of_variables(nsf_cond):
    flow, v = nsf_cond
    x = 1.5 * jax.random.normal(jax.random.PRNGKey(3), (20, 2))
    c = jax.random.normal(jax.random.PRNGKey(4), (20, 2))
    to_base = lambda xi, ci: flow.apply(v, xi[None], ci[None])[0][0]  # noqa: E731
    z = jax.vmap(to_base)(x, c)
    jac = jax.vmap(jax.jacfwd(to_base))(x, c)
    expected = flow.base_log_prob(z) + jnp.log(jnp.abs(jnp.linalg.det(jac)))
    np.testing.assert_allclose(flow.apply(v, x, c, method=flow.log_prob), expected, atol=1e-4)


def test_each_conditional_density_integrates_to_one(nsf_cond):
    flow, v = nsf_cond
    g = np.linspace(-8.0, 8.0, 601)
    xx, yy = np.meshgrid(g, g)
    grid = jnp.asarray(np.stack([xx.ravel(), yy.ravel()], 1), jnp.float32)
    dens = []
    for c in ([0.0, 0.0], [1.5, -1.0]):
        p = jnp.exp(flow.apply(v, grid, jnp.asarray([c]), method=flow.log_prob))
        assert abs(float(jnp.sum(p)) * (g[1] - g[0]) ** 2 - 1.0) < 0.01
        dens.append(p)
    assert float(jnp.max(jnp.abs(dens[0] - dens[1]))) > 1e-2


def test_sampling_inverts_the_density_direction_in_float64():
    with jax.enable_x64(True):
        flow = NSFCouplingFlow(dim=3, num_transforms=3, num_bins=6, hidden=(16, 16), bound=3.0, context_dim=2)
        v = _perturbed(flow, jax.random.PRNGKey(5), scale=0.5, context_dim=2, dtype=jnp.float64)
        ctx = jnp.asarray([[0.3, -1.2]], jnp.float64)
        x, lp = flow.apply(v, jax.random.PRNGKey(6), 400, ctx, method=flow.sample_and_log_prob)
        assert x.dtype == jnp.float64 and x.shape == (400, 3)
        np.testing.assert_allclose(flow.apply(v, x, ctx, method=flow.log_prob), lp, atol=1e-8)
        assert float(jnp.max(jnp.abs(lp - flow.base_log_prob(x)))) > 0.1  # not the identity


def test_config_builds_and_trains_the_nsf_flow():
    cfg = aj.TrainConfig(method="nf", flow="nsf", num_transforms=2, num_bins=4, flow_hidden=(8, 8), bound=3.0)
    flow, _ = aj.build_models(cfg, dim=2)
    assert isinstance(flow, NSFCouplingFlow) and flow.residual and flow.lu
    x, test = aj.load_dataset("moons", n_train=256, n_test=256)
    result = aj.fit(x, test_data=test, config=cfg, seeds=1, num_steps=200, eval_every=100, progress=False, standardize=False)
    # a fresh flow is the identity, so training starts at the standard normal's test NLL
    start = float(np.mean(0.5 * np.sum(np.asarray(test) ** 2, axis=1) + np.log(2 * np.pi)))
    assert np.isfinite(result.last_test_nll_p).all()
    assert float(result.last_test_nll_p[0]) < start - 0.3, (start, result.last_test_nll_p)


def test_residual_conditioner_starts_as_torch_nn_linear():
    """nflows' ResidualNet layers are PyTorch ``nn.Linear``s: weights and biases uniform on
    ±1/sqrt(fan_in) (PyTorch's documented default), except each block's last layer (±1e-3)
    and our zero output layer. Flax's LeCun-normal default (zero biases, 3× the variance)
    fails the bound or the bias checks."""
    width, ctx = 256, 3
    flow = NSFCouplingFlow(dim=2, num_transforms=1, num_bins=4, hidden=(width, width), context_dim=ctx)
    p = flow.init(jax.random.PRNGKey(0), jnp.zeros((1, 2)), jnp.zeros((1, ctx)))["params"]["couplings"]["_ResidualConditioner_0"]
    fan_ins = {"Dense_0": 2 + ctx, "Dense_1": width, "Dense_3": ctx, "Dense_4": width, "Dense_6": ctx}
    for name, fan_in in fan_ins.items():
        bound = 1.0 / np.sqrt(fan_in)
        for leaf in ("kernel", "bias"):
            w = np.asarray(p[name][leaf])[0]  # the scanned layer axis first
            assert np.abs(w).max() <= bound * (1 + 1e-6), (name, leaf)
            if w.size >= 256:  # a uniform on ±b has variance b²/3
                np.testing.assert_allclose(w.var(), bound**2 / 3, rtol=0.15, err_msg=f"{name} {leaf}")
            assert np.abs(w).max() > 0.5 * bound, (name, leaf)
    for name in ("Dense_2", "Dense_5"):
        assert np.abs(np.asarray(p[name]["kernel"])).max() <= 1e-3
    assert not np.any(np.asarray(p["Dense_7"]["kernel"])) and not np.any(np.asarray(p["Dense_7"]["bias"]))
