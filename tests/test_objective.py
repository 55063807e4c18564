"""Objective: ζ estimate, closed-form relaxations, Lagrangian, surrogate gradients vs the paper."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from adasym_jax import ResidualEBM, SplineFlow
from adasym_jax import objective as obj

LAMS = {"fw": 0.7, "rv": 1.3, "prx": 0.4, "zeta_u": 0.25, "zeta_l": 0.1}
LAMS = {k: jnp.asarray(v) for k, v in LAMS.items()}


def _perturb(params, key, scale):
    leaves, tree = jax.tree.flatten(params)
    keys = jax.random.split(key, len(leaves))
    return jax.tree.unflatten(tree, [p + scale * jax.random.normal(k, p.shape) for p, k in zip(leaves, keys)])


@pytest.fixture(scope="module")
def models():
    flow = SplineFlow(dim=2, num_transforms=2, num_bins=4, hidden=(8,), bound=4.0)
    ebm = ResidualEBM(hidden=8, num_blocks=1)
    x0 = jnp.zeros((1, 2))
    theta = _perturb(flow.init(jax.random.PRNGKey(0), x0)["params"], jax.random.PRNGKey(1), 0.2)
    ev = ebm.init(jax.random.PRNGKey(2), x0)
    x = jax.random.normal(jax.random.PRNGKey(3), (7, 2))
    y = flow.apply({"params": theta}, jax.random.PRNGKey(4), 5, method="sample")
    return flow, ebm, theta, ev, x, y


def test_log_zeta_matches_closed_form():
    # proposal: a (non-trivial) flow; energy: a Gaussian log-density plus c, so ζ = e^c
    flow = SplineFlow(dim=2, num_transforms=2, num_bins=4, hidden=(8,), bound=4.0)
    theta = _perturb(flow.init(jax.random.PRNGKey(0), jnp.zeros((1, 2)))["params"], jax.random.PRNGKey(9), 0.1)
    y, log_p = flow.apply({"params": theta}, jax.random.PRNGKey(1), 200_000, method="sample_and_log_prob")
    c, mu, s = 1.7, jnp.array([0.3, -0.2]), 0.6
    log_f = -0.5 * jnp.sum((y - mu) ** 2, 1) / s**2 - 2 * math.log(s) - math.log(2 * math.pi) + c
    est = float(obj.log_zeta_estimate(log_f, log_p))
    assert abs(est - c) < 0.02, est
    # and it is a log-sum-exp: huge energies do not overflow
    assert np.isfinite(float(obj.log_zeta_estimate(log_f + 500.0, log_p)))


@pytest.mark.parametrize("negative_nll", [False, True])
def test_closed_forms_minimize_the_lagrangian(negative_nll):
    for lam in (0.05, 0.8, 3.0):
        g = 0.37

        def L(eps, delta):
            val = eps**2 + lam * (g - eps)
            if negative_nll:
                val = val - delta + lam * delta**2
            return val

        e0, d0 = obj.resilient_epsilon(lam), obj.resilient_delta(lam)
        grads = jax.grad(L, argnums=(0, 1))(e0, d0)
        np.testing.assert_allclose(grads[0], 0.0, atol=1e-6)
        if negative_nll:
            np.testing.assert_allclose(grads[1], 0.0, atol=1e-5)
        for de in (-0.1, 0.1):
            assert L(e0 + de, d0) > L(e0, d0)
            if negative_nll:
                assert L(e0, d0 + de) > L(e0, d0)
        # the relaxed slack at the optimum is what the dual ascends
        expect = g - lam / 2 + (1 / (4 * lam**2) if negative_nll else 0.0)
        np.testing.assert_allclose(obj.relaxed_violation(g, lam, negative_nll), expect, rtol=1e-6)


@pytest.mark.parametrize("negative_nll", [False, True])
def test_dual_gradients_are_the_lagrangian_derivatives(negative_nll):
    values = {"fw": jnp.asarray(-0.4), "rv": jnp.asarray(0.3), "prx": jnp.asarray(0.9), "zeta": jnp.asarray(1.3)}
    # envelope theorem: d/dλ of the Lagrangian at the closed-form ε(λ), δ(λ) is the slack
    auto = jax.grad(lambda lam: obj.lagrangian(values, lam, 0.1, negative_nll))(LAMS)
    direct = obj.dual_gradients(values, LAMS, 0.1, negative_nll)
    for k in obj.MULTIPLIER_NAMES:
        np.testing.assert_allclose(auto[k], direct[k], rtol=1e-5, atol=1e-6)
    assert float(direct["zeta_u"]) > 0 and float(direct["zeta_l"]) < 0  # ζ = 1.3 > 1 + 0.1


def test_lagrangian_is_eq_11(models):
    v = {"fw": jnp.asarray(1.1), "rv": jnp.asarray(0.2), "prx": jnp.asarray(1.6), "zeta": jnp.asarray(0.95)}
    lam = LAMS
    eps = {k: lam[k] / 2 for k in ("fw", "rv", "prx")}
    manual = (
        sum(eps[k] ** 2 - lam[k] * eps[k] + lam[k] * v[k] for k in ("fw", "rv", "prx"))
        + lam["zeta_u"] * (v["zeta"] - 1 - 0.1)
        + lam["zeta_l"] * (1 - v["zeta"])
    )
    np.testing.assert_allclose(obj.lagrangian(v, lam, 0.1, False), manual, rtol=1e-6)


def _per_sample_grads(fn, params, pts):
    """Jacobian of the per-sample outputs fn(params, pts) (n,) w.r.t. params: list over leaves."""
    return jax.jacrev(lambda p: fn(p, pts))(params)


@pytest.mark.parametrize("temperature", [1.0, 0.5])
def test_psi_surrogate_gradient_is_eq_15(models, temperature):
    flow, ebm, theta, ev, x, y = models
    T = temperature
    log_p_y = flow.apply({"params": theta}, y, method="log_prob")
    f = lambda psi, pts: ebm.apply({"params": psi, "spectral": ev["spectral"]}, pts) * (1.0 / T)  # noqa: E731
    ebm_T = ResidualEBM(hidden=8, num_blocks=1, temperature=T)
    logq = lambda psi, pts: ebm_T.apply({"params": psi, "spectral": ev["spectral"]}, pts)  # noqa: E731
    psi = ev["params"]
    log_zeta = jnp.asarray(0.2)

    def surrogate(psi_):
        lq_x, lq_y = logq(psi_, x), logq(psi_, y)
        return obj.psi_surrogate(lq_x, lq_y, log_zeta, lq_y, log_p_y, LAMS, T)

    got = jax.grad(surrogate)(psi)
    # eq. (15), written with f = log q̃ = f_ψ / T (T = 1: verbatim)
    jx, jy = _per_sample_grads(f, psi, x), _per_sample_grads(f, psi, y)
    w = jnp.exp(f(psi, y) - log_p_y)
    lam = LAMS
    coef_y = ((lam["rv"] * T + lam["prx"]) / jnp.exp(log_zeta) + lam["zeta_u"] - lam["zeta_l"]) * w - lam["rv"] * T
    expect = jax.tree.map(
        lambda gx, gy: jnp.tensordot(-lam["prx"] * jnp.ones(x.shape[0]), gx, 1) / x.shape[0]
        + jnp.tensordot(coef_y, gy, 1) / y.shape[0],
        jx,
        jy,
    )
    for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(expect)):
        np.testing.assert_allclose(a, b, rtol=2e-4, atol=1e-6)


def test_psi_surrogate_stays_finite_when_a_condition_has_tiny_zeta():
    # Per-condition ζ (B.6) of a condition whose samples all sit where q̃ is tiny: log ζ = −120
    # (exp(−log ζ) overflows float32) with weights log w ≈ −120 as well. The weight of ∇f is
    # (λ_rv + λ_prx) w/ζ + (λ_u − λ_l) w, finite; the float64 value of the gradient is the truth.
    log_zeta = jnp.asarray([0.3, -120.0])
    zp = jnp.zeros((2, 3))
    shift = jnp.asarray([[0.1, -0.2, 0.4], [-119.0, -121.0, -120.5]])

    def loss(a, dtype):
        zq = (shift + a).astype(dtype)
        return obj.psi_surrogate(jnp.zeros(4, dtype), jnp.zeros(2, dtype), log_zeta.astype(dtype), zq, zp.astype(dtype), LAMS)

    g32 = jax.grad(lambda a: loss(a, jnp.float32))(jnp.float32(0.0))
    assert np.isfinite(g32)
    w = np.exp(np.asarray(shift, np.float64))
    c = (float(LAMS["rv"]) + float(LAMS["prx"])) * w / np.exp(np.asarray(log_zeta, np.float64))[:, None] + (float(LAMS["zeta_u"]) - float(LAMS["zeta_l"])) * w
    np.testing.assert_allclose(g32, np.mean(np.mean(c, axis=-1)), rtol=1e-5)


@pytest.mark.parametrize("temperature", [1.0, 0.25])
def test_theta_surrogate_gradient_is_eq_18(models, temperature):
    flow, ebm, theta, ev, x, y = models
    T = temperature
    lp = lambda th, pts: flow.apply({"params": th}, pts, method="log_prob")  # noqa: E731
    log_q_y = ebm.apply(ev, y) / T

    def surrogate(th):
        return obj.theta_surrogate_score(lp(th, x), lp(th, y), log_q_y, LAMS, T)

    got = jax.grad(surrogate)(theta)
    jx, jy = _per_sample_grads(lp, theta, x), _per_sample_grads(lp, theta, y)
    # eq. (18) with the T-weighted KL of eq. (22): f_ψ = T log q̃
    coef_y = LAMS["rv"] * (T * lp(theta, y) - T * log_q_y)
    expect = jax.tree.map(
        lambda gx, gy: -LAMS["fw"] * jnp.mean(gx, 0) + jnp.tensordot(coef_y, gy, 1) / y.shape[0], jx, jy
    )
    for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(expect)):
        np.testing.assert_allclose(a, b, rtol=2e-4, atol=1e-6)


def test_score_and_pathwise_estimate_the_same_kl_gradient():
    # ∇θ KL(p_θ || q) for a 1-D flow and a fixed Gaussian q, by both estimators, many samples
    flow = SplineFlow(dim=1, num_transforms=1, num_bins=4, hidden=(4,), bound=4.0)
    theta = _perturb(flow.init(jax.random.PRNGKey(0), jnp.zeros((1, 1)))["params"], jax.random.PRNGKey(5), 0.3)
    log_q = lambda y: -0.5 * ((y[:, 0] - 1.0) / 0.7) ** 2  # noqa: E731  (unnormalized is fine)
    lam = {"fw": jnp.asarray(0.0), "rv": jnp.asarray(1.0)}
    n = 400_000
    key = jax.random.PRNGKey(6)
    y = jax.lax.stop_gradient(flow.apply({"params": theta}, key, n, method="sample"))

    def score(th):
        lp_y = flow.apply({"params": th}, y, method="log_prob")
        return obj.theta_surrogate_score(jnp.zeros(1), lp_y, log_q(y), lam)

    def path(th):
        yt, lp_y = flow.apply({"params": th}, key, n, method="sample_and_log_prob")
        return obj.theta_surrogate_pathwise(jnp.zeros(1), lp_y, log_q(yt), lam)

    gs = np.concatenate([np.ravel(a) for a in jax.tree.leaves(jax.grad(score)(theta))])
    gp = np.concatenate([np.ravel(a) for a in jax.tree.leaves(jax.grad(path)(theta))])
    # Monte Carlo noise: compare directions and norms, not single entries
    cos = gs @ gp / (np.linalg.norm(gs) * np.linalg.norm(gp))
    assert cos > 0.95, cos
    assert 0.8 < np.linalg.norm(gs) / np.linalg.norm(gp) < 1.25
