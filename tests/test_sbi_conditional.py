"""The conditional dual step (B.6, ``TrainConfig.zeta_per_condition``): surrogate gradients
against autodiff of the estimated Lagrangian, per-condition ζ. (Training through the step, vmapped over seeds, is covered by
the end-to-end run in test_sbi_run.py.)"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from adasym_jax import TrainConfig
from adasym_jax.objective import constraint_values, psi_surrogate
from adasym_jax.state import build_models
from adasym_jax.zeta_sources import per_condition_samples


def test_psi_surrogate_gradient_is_the_lagrangian_gradient():
    """With f_ψ(y) = ψ·φ(y) and log ζ(u_i) the K-sample importance estimate, autodiff of the
    ψ-part of the Lagrangian with per-condition partition functions, mean-ζ constraint,
    must equal the gradient of ``objective.psi_surrogate`` given per-condition ``log_zeta (n,)`` and
    ``(n, K)`` samples (``zeta_grad="importance"`` form)."""
    n, K, d = 6, 5, 3
    ks = jax.random.split(jax.random.PRNGKey(0), 5)
    phi_x, phi_y = jax.random.normal(ks[0], (n, d)), jax.random.normal(ks[1], (n, d))
    phi_m = jax.random.normal(ks[2], (n, K, d))
    log_p_m = jax.random.normal(ks[3], (n, K))
    psi = 0.3 * jax.random.normal(ks[4], (d,))
    lam = {"fw": 0.2, "rv": 0.7, "prx": 0.4, "zeta_u": 0.3, "zeta_l": 0.1}
    lam = {k: jnp.asarray(v) for k, v in lam.items()}
    T = 1.5

    def lagrangian_psi(p):
        log_zeta = jax.nn.logsumexp(phi_m @ p - log_p_m, axis=-1) - jnp.log(K)
        rv = T * jnp.mean(-(phi_y @ p) + log_zeta)
        prx = -jnp.mean(phi_x @ p - log_zeta)
        zeta = jnp.mean(jnp.exp(log_zeta))
        return lam["rv"] * rv + lam["prx"] * prx + lam["zeta_u"] * (zeta - 1.0) + lam["zeta_l"] * (1.0 - zeta)

    def surrogate(p):
        zq = phi_m @ p
        log_zeta = jax.nn.logsumexp(jax.lax.stop_gradient(zq) - log_p_m, axis=-1) - jnp.log(K)
        return psi_surrogate(phi_x @ p, phi_y @ p, log_zeta, zq, log_p_m, lam, T)

    np.testing.assert_allclose(jax.jit(jax.grad(surrogate))(psi), jax.jit(jax.grad(lagrangian_psi))(psi), rtol=1e-5, atol=1e-6)


def test_constraint_uses_mean_of_zetas_not_of_logs():
    log_zeta = jnp.log(jnp.array([0.5, 2.0]))
    z = jnp.zeros(2)
    v = constraint_values(z, z, z, z, log_zeta)
    assert float(v["zeta"]) == pytest.approx(1.25)
    # rv and prx carry the mean of log ζ(u_i) (here 0).
    assert float(v["prx"]) == pytest.approx(0.0, abs=1e-7)


def test_bad_configs_are_refused():
    with pytest.raises(ValueError, match="context_dim"):
        TrainConfig(context_dim=0, zeta_per_condition=4)
    with pytest.raises(ValueError, match="zeta_per_condition"):
        TrainConfig(context_dim=2, zeta_per_condition=-1)
    cfg = TrainConfig(context_dim=2)  # zeta_per_condition 0: the pooled estimate, not B.6
    with pytest.raises(ValueError, match="zeta_per_condition"):
        per_condition_samples(cfg, build_models(cfg, 2)[0])


def test_per_condition_draw_groups_samples_by_condition():
    """K samples at each of the batch's conditions, in consecutive groups, one reverse-KL
    sample per condition, and log p_θ of each sample at its own condition."""
    cfg = TrainConfig(context_dim=2, zeta_per_condition=3, num_transforms=2, flow_hidden=(8,), ebm_blocks=1, ebm_hidden=8)
    flow, ebm = build_models(cfg, 2)
    from adasym_jax.batch import Batch
    from adasym_jax.state import init_state

    s = init_state(cfg, flow, ebm, jax.random.PRNGKey(0), 2)
    ctx = jax.random.normal(jax.random.PRNGKey(1), (5, 2))
    draw = per_condition_samples(cfg, flow)(s, Batch(jnp.zeros((5, 2)), ctx))
    assert draw.num_conditions == 5
    assert draw.zeta.points.shape == (15, 2) and draw.reverse.points.shape == (5, 2)
    np.testing.assert_array_equal(draw.zeta.context, jnp.repeat(ctx, 3, axis=0))
    lp = flow.apply({"params": s.flow_params}, draw.zeta.points, draw.zeta.context, method="log_prob")
    np.testing.assert_allclose(lp, draw.zeta.log_p, rtol=1e-4, atol=1e-4)
