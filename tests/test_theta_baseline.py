"""Baselines in eq. (18)'s score-function weight: unbiased (same expectation as the paper's
verbatim estimator over many sample sets) and lower in variance when log ζ has drifted."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.flatten_util import ravel_pytree

import adasym_jax as aj
from adasym_jax import objective as obj
from adasym_jax.train import score_baseline, theta_baseline_mode

sg = jax.lax.stop_gradient
N, R, K = 16, 600, 64  # reverse samples per set, sample sets, ζ samples per condition


def test_leave_one_out_mean_matches_a_loop():
    w = jnp.asarray([1.0, -2.0, 4.0, 0.5])
    expected = [np.mean(np.delete(np.asarray(w), i)) for i in range(4)]
    np.testing.assert_allclose(obj.leave_one_out_mean(w), expected, rtol=1e-6)
    np.testing.assert_array_equal(obj.leave_one_out_mean(jnp.asarray([3.0])), [0.0])


def test_auto_resolves_by_conditioning(tiny_config):
    assert theta_baseline_mode(tiny_config) == "loo"
    assert theta_baseline_mode(tiny_config.replace(context_dim=2)) == "loo"
    assert theta_baseline_mode(tiny_config.replace(theta_baseline="none", context_dim=2)) == "none"


def _setup(context_dim):
    cfg = aj.TrainConfig(num_transforms=2, num_bins=4, flow_hidden=(8,), ebm_hidden=8, ebm_blocks=1, context_dim=context_dim)
    flow, ebm = aj.build_models(cfg, 2)
    state = aj.init_state(cfg, flow, ebm, jax.random.PRNGKey(0), 2)
    leaves, tree = jax.tree.flatten(state.flow_params)
    keys = jax.random.split(jax.random.PRNGKey(1), len(leaves))
    theta = jax.tree.unflatten(tree, [p + 0.2 * jax.random.normal(k, p.shape) for p, k in zip(leaves, keys)])
    ebm_vars = {"params": state.ebm_params, "spectral": state.ebm_stats}
    return cfg, flow, ebm, theta, ebm_vars


@pytest.fixture(scope="module", params=[0, 1], ids=["unconditional", "conditional"])
def gradients(request):
    return reverse_gradients(request.param)


def reverse_gradients(context_dim):
    """Reverse-KL part of ∇θ (λ_fw = 0, λ_rv = 1) for R sample sets, per baseline mode, with
    f_ψ shifted by +5 (log ζ far from 0, as after a drift of ζ̂)."""
    cfg, flow, ebm, theta, ebm_vars = _setup(context_dim)
    lam = {"fw": jnp.asarray(0.0), "rv": jnp.asarray(1.0)}
    ctx = jnp.linspace(-1.0, 1.0, N)[:, None] if context_dim else None
    shift = 5.0

    def one_set(key, mode):
        k_y, k_m = jax.random.split(key)
        y, log_p_s = flow.apply({"params": theta}, k_y, N, ctx, method="sample_and_log_prob")
        y, log_p_s = sg(y), sg(log_p_s)
        log_q = ebm.apply(ebm_vars, y, ctx) + shift
        # log ζ̂ from independent samples: one per condition (B.6) or one scalar
        ctx_m = None if ctx is None else jnp.repeat(ctx, K, axis=0)
        y_m, log_p_m = flow.apply({"params": theta}, k_m, N * K, ctx_m, method="sample_and_log_prob")
        log_q_m = ebm.apply(ebm_vars, y_m, ctx_m) + shift
        shape = (N, K) if context_dim else (-1,)
        log_zeta = obj.log_zeta_estimate(log_q_m.reshape(shape), log_p_m.reshape(shape))
        b = score_baseline(cfg.replace(theta_baseline=mode), log_p_s, log_q, log_zeta)

        def loss(th):
            log_p_y = flow.apply({"params": th}, y, ctx, method="log_prob")
            return obj.theta_surrogate_score(jnp.zeros((1,)), log_p_y, log_q, lam, 1.0, b)

        return ravel_pytree(jax.grad(loss)(theta))[0]

    keys = jax.random.split(jax.random.PRNGKey(2), R)
    return {m: np.asarray(jax.jit(jax.vmap(lambda k, m=m: one_set(k, m)))(keys)) for m in ("none", "loo", "log_zeta", "log_zeta_loo")}


@pytest.mark.parametrize("mode", ["loo", "log_zeta", "log_zeta_loo"])
def test_baseline_keeps_the_expectation_of_the_verbatim_estimator(gradients, mode):
    g0, g1 = gradients["none"], gradients[mode]
    dirs = np.random.default_rng(0).normal(size=(4, g0.shape[1]))
    for d in dirs:
        a, b = g0 @ d, g1 @ d
        se = np.sqrt(a.var() / R + b.var() / R)
        assert abs(a.mean() - b.mean()) < 4.0 * se, (mode, a.mean(), b.mean(), se)
    # the check has power: the gradient is far from zero at this spread
    assert np.linalg.norm(g0.mean(0)) > 0.0


def test_baselines_cut_the_spread_when_log_zeta_has_drifted(gradients):
    spread = {m: float(np.mean(np.linalg.norm(g - g.mean(0), axis=1))) for m, g in gradients.items()}
    assert spread["loo"] < 0.5 * spread["none"], spread
    assert spread["log_zeta"] < 0.5 * spread["none"], spread
    assert spread["log_zeta_loo"] < 0.5 * spread["none"], spread


def test_the_two_baselines_agree(gradients):
    """Both baselines have a small spread, so comparing them to each other is a sharper test
    of unbiasedness than comparing either to the verbatim estimator."""
    g_loo, g_z = gradients["loo"], gradients["log_zeta_loo"]
    for d in np.random.default_rng(1).normal(size=(4, g_z.shape[1])):
        a, b = g_loo @ d, g_z @ d
        assert abs(a.mean() - b.mean()) < 4.0 * np.sqrt(a.var() / R + b.var() / R)


def test_leave_one_out_baseline_does_not_depend_on_its_own_sample():
    """Why it is unbiased: b_i is a function of the other weights only (∂b_i/∂w_i = 0),
    where the plain batch mean (which would be biased by a factor 1/N) is not."""
    w = jnp.asarray([0.3, -1.2, 2.0, 0.7, 5.0])
    jac = np.asarray(jax.jacfwd(obj.leave_one_out_mean)(w))
    np.testing.assert_array_equal(np.diag(jac), 0.0)
    np.testing.assert_allclose(jac[~np.eye(5, dtype=bool)], 1.0 / 4.0)
