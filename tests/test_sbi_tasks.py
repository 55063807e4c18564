"""SBI tasks: exact posteriors against rejection ABC and against grid quadrature of prior ×
likelihood; simulators against their closed-form likelihoods; input validation."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from adasym_jax.sbi import tasks as T


def _projections(b):
    b = np.asarray(b, np.float64)
    return np.stack([b[:, 0], b[:, 1], b[:, 0] + b[:, 1], b[:, 1] - b[:, 0]], axis=1)


@pytest.mark.parametrize("name,tol", [("two_moons", 0.05), ("gaussian_mixture", 0.05)])
def test_exact_posterior_matches_rejection_abc(name, tol):
    task = T.get_task(name)
    exact = task.posterior(jax.random.PRNGKey(1), task.observation, 2000)
    abc = T.rejection_abc(task, jax.random.PRNGKey(2), task.observation, 2000, tolerance=tol, batch=50_000)
    assert exact.shape == abc.shape == (2000, 2)
    # Moments of four projections, and quantiles of the (unimodal) |β₁ + β₂| and β₂ − β₁, agree
    # to within ABC's blur plus Monte Carlo error.
    pe, pa = _projections(exact), _projections(abc)
    np.testing.assert_allclose(pe.mean(0), pa.mean(0), atol=0.03)
    np.testing.assert_allclose(pe.std(0), pa.std(0), atol=0.03)
    qs = [0.1, 0.25, 0.5, 0.75, 0.9]
    for fe, fa in ((np.abs(pe[:, 2]), np.abs(pa[:, 2])), (pe[:, 3], pa[:, 3])):
        np.testing.assert_allclose(np.quantile(fe, qs), np.quantile(fa, qs), atol=0.05)


def _grid_moments(task, u0, lo, hi, m=700):
    g0, g1 = np.linspace(lo[0], hi[0], m), np.linspace(lo[1], hi[1], m)
    b = np.stack(np.meshgrid(g0, g1, indexing="ij"), -1).reshape(-1, 2).astype(np.float32)
    ll = np.asarray(task.log_likelihood(jnp.broadcast_to(jnp.asarray(u0, jnp.float32), b.shape), jnp.asarray(b)), np.float64)
    ll = ll + np.asarray(T.log_prior(task, jnp.asarray(b)), np.float64)
    w = np.exp(ll - ll.max())
    w /= w.sum()
    p = _projections(b)
    return (w[:, None] * p).sum(0), (w[:, None] * np.abs(p)).sum(0)


@pytest.mark.parametrize("name,u0", [("two_moons", (0.1, -0.2)), ("gaussian_mixture", (0.8, 0.6)), ("gaussian_mixture_wide", (0.75, 0.75))])
def test_exact_posterior_matches_quadrature(name, u0):
    """Independent truth: prior × closed-form likelihood integrated on a fine grid."""
    task = T.get_task(name)
    s = _projections(task.posterior(jax.random.PRNGKey(3), u0, 20000))
    lo, hi = (task.prior_low, task.prior_high) if name != "gaussian_mixture_wide" else ((-4.0, -4.0), (5.5, 5.5))
    mean, abs_mean = _grid_moments(task, u0, lo, hi)
    np.testing.assert_allclose(s.mean(0), mean, atol=0.02)
    np.testing.assert_allclose(np.abs(s).mean(0), abs_mean, atol=0.02)


def test_simulator_matches_log_likelihood():
    """Two moons: the simulated u at a fixed β has the density of the closed form (check the
    expectation of a test function by quadrature over u)."""
    task = T.get_task("two_moons")
    beta = jnp.array([[0.3, -0.5]])
    u = np.asarray(task.simulator(jax.random.PRNGKey(0), jnp.repeat(beta, 20000, 0)))
    g = np.linspace(-1.0, 1.0, 500)
    grid = np.stack(np.meshgrid(g, g, indexing="ij"), -1).reshape(-1, 2).astype(np.float32)
    dens = np.exp(np.asarray(task.log_likelihood(jnp.asarray(grid), jnp.repeat(beta, len(grid), 0)), np.float64))
    cell = (g[1] - g[0]) ** 2
    assert abs(dens.sum() * cell - 1.0) < 0.02
    for f in (lambda x: x[:, 0], lambda x: x[:, 1] ** 2):
        assert abs((dens * f(grid)).sum() * cell - f(u).mean()) < 0.01


def test_priors_and_shapes():
    for name in ("two_moons", "gaussian_mixture"):
        task = T.get_task(name)
        beta, u = T.simulate_dataset(task, jax.random.PRNGKey(0), 500)
        assert beta.shape == (500, 2) and u.shape == (500, 2)
        assert np.all(beta >= np.array(task.prior_low)) and np.all(beta <= np.array(task.prior_high))


def test_bad_input_is_reported_before_training():
    with pytest.raises(ValueError, match="unknown SBI task"):
        T.get_task("three_moons")
    task = T.get_task("two_moons")
    with pytest.raises(ValueError, match="obs_dim=2"):
        T.validate_observation(task, [0.0, 0.0, 1.0])
    prior = T.uniform_prior((0.0,), (1.0,))
    with pytest.raises(ValueError, match="shape"):
        T.user_task(prior, lambda k, b: b[:, 0], [0.0])  # (n,) instead of (n, k)
    with pytest.raises(ValueError, match="NaN"):
        T.user_task(prior, lambda k, b: jnp.log(b - 2.0), [0.0])
    ok = T.user_task(prior, lambda k, b: b + jax.random.normal(k, b.shape), [0.5])
    assert (ok.param_dim, ok.obs_dim) == (1, 1)
    with pytest.raises(ValueError, match="obs_dim=1"):
        T.user_task(prior, lambda k, b: b, [0.5, 0.5])
    with pytest.raises(ValueError, match="NaN"):
        T.validate_task(T.SBITask("bad", 1, 1, prior, lambda k, b: b / 0.0 * 0.0, (0.0,)))


def test_load_pairs(tmp_path):
    beta, u = np.random.default_rng(0).normal(size=(2, 30, 2)).astype(np.float32)
    np.savez(tmp_path / "sims.npz", beta=beta, u=u)
    b, uu = T.load_pairs(str(tmp_path / "sims.npz"))
    np.testing.assert_array_equal(b, beta)
    np.testing.assert_array_equal(uu, u)
    np.save(tmp_path / "m.npy", np.concatenate([beta, u], axis=1))
    b, uu = T.load_pairs(str(tmp_path / "m.npy"), param_dim=2)
    np.testing.assert_array_equal(uu, u)
    np.savez(tmp_path / "bad.npz", beta=beta, x=u)
    with pytest.raises(ValueError, match="'beta' and 'u'"):
        T.load_pairs(str(tmp_path / "bad.npz"))
    u[3, 1] = np.nan
    np.savez(tmp_path / "nan.npz", beta=beta, u=u)
    with pytest.raises(ValueError, match="NaN"):
        T.load_pairs(str(tmp_path / "nan.npz"))
