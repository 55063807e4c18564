"""p_θ as a distrax distribution and q_ψ as an energy density, against independent truths:
N(0, I) at initialization, normalization on a grid, Monte Carlo vs quadrature, the flow's own
methods, and Trainer.evaluate."""

import distrax
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import adasym_jax as aj
from adasym_jax.export import FlowDistribution


DIM = 2


def _perturb(tree, seed, scale=0.3):
    """Random parameters (NumPy noise, so no per-shape compilation)."""
    rng = np.random.default_rng(seed)
    return jax.tree.map(lambda a: a + scale * rng.standard_normal(np.shape(a)).astype(np.float32), tree)


def _normal(seed, shape, scale=1.0):
    return (scale * np.random.default_rng(seed).standard_normal(shape)).astype(np.float32)


def _grid(lo=-7.0, hi=7.0, n=281):
    g = np.linspace(lo, hi, n, dtype=np.float32)
    pts = np.stack(np.meshgrid(g, g, indexing="ij"), -1).reshape(-1, 2)
    return jnp.asarray(pts), float(g[1] - g[0]) ** 2


@pytest.fixture(scope="module")
def setup(tiny_config):
    trainer = aj.Trainer(tiny_config, DIM)
    fresh = trainer.init([0, 1])
    # A fresh flow is the identity; random parameters give a non-trivial density.
    flow_params = _perturb(fresh.flow_params, 7)
    state = fresh.replace(flow_params=flow_params)
    params0 = jax.tree.map(lambda a: np.asarray(a)[0], flow_params)
    return trainer, state, params0, aj.to_distrax(trainer.flow, {"params": params0}), fresh


def test_fresh_flow_is_standard_normal(setup):
    trainer, _, _, _, fresh = setup
    params = jax.tree.map(lambda a: np.asarray(a)[1], fresh.flow_params)
    d = aj.to_distrax(trainer.flow, {"params": params})
    assert isinstance(d, distrax.Distribution)
    x = _normal(0, (16, DIM), 2.0)
    ref = distrax.MultivariateNormalDiag(jnp.zeros(DIM), jnp.ones(DIM))
    np.testing.assert_allclose(d.log_prob(x), ref.log_prob(x), rtol=1e-5, atol=1e-5)


def test_agrees_with_spline_flow(setup):
    trainer, _, params, d, _ = setup
    v = {"params": params}
    flow = trainer.flow
    x = _normal(1, (32, DIM), 1.5)
    key = jax.random.PRNGKey(2)
    ref_log_prob = jax.jit(lambda v, x: flow.apply(v, x, method="log_prob"))(v, x)
    np.testing.assert_allclose(d.log_prob(x), ref_log_prob, rtol=1e-6, atol=1e-6)
    s, lp = d.sample_and_log_prob(seed=key, sample_shape=(7,))
    s_ref, lp_ref = jax.jit(lambda v, k: flow.apply(v, k, 7, method="sample_and_log_prob"))(v, key)
    np.testing.assert_allclose(d.sample(seed=key, sample_shape=(7,)), s_ref, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(s, s_ref, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(lp, lp_ref, rtol=1e-6, atol=1e-6)
    # the log-density returned with the samples is the density at the samples (inverse pass)
    np.testing.assert_allclose(lp, d.log_prob(s), atol=2e-4)
    assert d.event_shape == (DIM,) and d.batch_shape == () and d.dtype == jnp.float32
    assert d.sample(seed=key, sample_shape=(1, 7)).shape == (1, 7, DIM)
    assert d.log_prob(x[0]).shape == ()


def test_normalized_and_moments_match_samples(setup):
    _, _, _, d, _ = setup
    pts, cell = _grid(n=561)  # Riemann sum; the spline density is only C¹, so O(h²) error
    p = np.exp(np.asarray(d.log_prob(pts), np.float64))
    assert abs(p.sum() * cell - 1.0) < 6e-3
    mean_grid = (p[:, None] * np.asarray(pts)).sum(0) * cell
    s = np.asarray(d.sample(seed=jax.random.PRNGKey(3), sample_shape=(20000,)), np.float64)
    se = s.std(0) / np.sqrt(len(s))
    assert np.all(np.abs(s.mean(0) - mean_grid) < 4 * se + 1e-3)


def test_jit_and_vmap(setup):
    trainer, state, _, d, _ = setup
    x = _normal(4, (9, DIM))
    eager = d.log_prob(x)
    np.testing.assert_allclose(jax.jit(lambda dist, y: dist.log_prob(y))(d, x), eager, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(jax.vmap(d.log_prob)(x), eager, rtol=1e-5, atol=1e-5)
    key = jax.random.PRNGKey(5)
    s_jit, lp_jit = jax.jit(lambda dist, k: dist.sample_and_log_prob(seed=k, sample_shape=(4,)))(d, key)
    s, lp = d.sample_and_log_prob(seed=key, sample_shape=(4,))
    np.testing.assert_allclose(s_jit, s, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(lp_jit, lp, rtol=1e-5, atol=1e-4)
    # vmap over the seed axis of a stacked state == one export per seed
    per_seed = jax.vmap(lambda p: aj.to_distrax(trainer.flow, {"params": p}).log_prob(x))(state.flow_params)
    for i in range(2):
        p_i = aj.to_distrax(trainer.flow, {"params": jax.tree.map(lambda a: np.asarray(a)[i], state.flow_params)})
        np.testing.assert_allclose(per_seed[i], p_i.log_prob(x), rtol=1e-5, atol=1e-5)


def test_conditional_flow_at_fixed_context():
    flow = aj.SplineFlow(dim=DIM, num_transforms=2, num_bins=4, hidden=(16,), context_dim=1)
    init = jax.jit(lambda k: flow.init(k, jnp.zeros((1, DIM)), jnp.zeros((1, 1)))["params"])
    v = {"params": _perturb(init(jax.random.PRNGKey(0)), 9)}
    x = _normal(1, (11, DIM))
    ctxs = jnp.array([[-1.0], [0.5], [2.0]])
    ref_fn = jax.jit(lambda v, x, c: flow.apply(v, x, c, method="log_prob"))
    for c in ctxs:
        d = aj.to_distrax(flow, v, context=c)
        ref = ref_fn(v, x, jnp.broadcast_to(c, (11, 1)))
        np.testing.assert_allclose(d.log_prob(x), ref, rtol=1e-6, atol=1e-6)
    pts, cell = _grid(n=561)
    mass = np.exp(np.asarray(aj.to_distrax(flow, v, context=ctxs[1]).log_prob(pts), np.float64)).sum() * cell
    assert abs(mass - 1.0) < 1e-2, mass
    # vmap over conditions: one distribution per row of ctxs
    batched = jax.vmap(lambda c: aj.to_distrax(flow, v, context=c).log_prob(x))(ctxs)
    loop = jnp.stack([aj.to_distrax(flow, v, context=c).log_prob(x) for c in ctxs])
    np.testing.assert_allclose(batched, loop, rtol=1e-5, atol=1e-5)
    assert not np.allclose(loop[0], loop[2])  # the condition matters
    with pytest.raises(ValueError, match="conditional"):
        aj.to_distrax(flow, v)
    with pytest.raises(ValueError, match="one fixed condition"):
        aj.to_distrax(flow, v, context=ctxs)


def test_bad_input(setup):
    trainer, _, params, d, _ = setup
    with pytest.raises(ValueError, match="context_dim=0"):
        aj.to_distrax(trainer.flow, {"params": params}, context=jnp.zeros(1))
    with pytest.raises(ValueError, match=r"\(\.\.\., 2\)"):
        d.log_prob(jnp.zeros((4, 3)))
    with pytest.raises(ValueError, match="NaN"):
        d.log_prob(jnp.array([[0.0, jnp.nan]]))
    with pytest.raises(ValueError, match="SplineFlow"):
        aj.to_distrax(trainer.ebm, {"params": params})
    with pytest.raises(ValueError, match="mapping"):
        aj.to_distrax(trainer.flow, [1, 2])


def test_standardization_maps_to_data_space(setup):
    trainer, _, params, d, _ = setup
    st = aj.Standardization(mean=np.array([3.0, -1.0]), std=np.array([2.0, 0.5]))
    dt = aj.to_distrax(trainer.flow, {"params": params}, standardization=st)
    x = st.invert(_normal(6, (8, DIM)))
    # change of variables: p_X(x) = p_Z((x - m) / s) / Π s
    expected = d.log_prob((x - st.mean) / st.std) - np.log(2.0 * 0.5)
    np.testing.assert_allclose(dt.log_prob(x), expected, rtol=1e-5, atol=1e-5)
    key = jax.random.PRNGKey(8)
    np.testing.assert_allclose(
        dt.sample(seed=key, sample_shape=(5,)), d.sample(seed=key, sample_shape=(5,)) * st.std + st.mean, rtol=1e-5, atol=1e-5
    )


def test_energy_log_zeta_against_quadrature(setup):
    trainer, state, _, _, _ = setup
    ebm_vars = {"params": jax.tree.map(lambda a: np.asarray(a)[0], state.ebm_params), "spectral": jax.tree.map(lambda a: np.asarray(a)[0], state.ebm_stats)}
    energy = aj.to_energy(trainer.ebm, ebm_vars, DIM)
    pts, cell = _grid(-3.0, 3.0, 121)
    ref = jax.jit(trainer.ebm.apply)(ebm_vars, pts)
    np.testing.assert_allclose(energy.log_unnormalized(pts), ref, rtol=1e-6, atol=1e-6)
    assert np.isnan(energy.log_zeta)
    # ζ over the box [-3, 3]²: Riemann sum vs importance sampling from a uniform proposal
    box = distrax.Independent(distrax.Uniform(low=jnp.full(DIM, -3.0), high=jnp.full(DIM, 3.0)), 1)
    q_grid = np.exp(np.asarray(energy.log_unnormalized(pts), np.float64))
    w = np.ones(121)
    w[[0, -1]] = 0.5  # trapezoid rule
    log_zeta_grid = np.log((q_grid.reshape(121, 121) * w[:, None] * w[None, :]).sum() * cell)
    est = aj.to_energy(trainer.ebm, ebm_vars, DIM, proposal=box, key=jax.random.PRNGKey(0), num_samples=40000)
    assert abs(float(est.log_zeta) - log_zeta_grid) < 0.02
    np.testing.assert_allclose(est.log_prob(pts[:5]), est.log_unnormalized(pts[:5]) - est.log_zeta, rtol=1e-6)
    # a pytree: jit- and vmap-compatible
    np.testing.assert_allclose(jax.jit(lambda e, y: e.log_prob(y))(est, pts[:5]), est.log_prob(pts[:5]), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(jax.vmap(est.log_prob)(pts[:5]), est.log_prob(pts[:5]), rtol=1e-5, atol=1e-5)


def test_export_state_matches_trainer_evaluate(setup):
    trainer, state, _, _, _ = setup
    x = _normal(10, (64, DIM))
    ev = trainer.evaluate(state, x)  # log ζ̂ from eval_zeta_samples flow samples, PRNGKey(12345)
    for i in range(2):
        p, q = aj.export_state(state, trainer.config, DIM, seed_index=i)
        assert isinstance(p, FlowDistribution)
        np.testing.assert_allclose(float(q.log_zeta), ev["log_zeta"][i], rtol=1e-4, atol=1e-4)
        np.testing.assert_allclose(-float(jnp.mean(q.log_prob(x))), ev["test_nll_q"][i], rtol=1e-4, atol=1e-4)
        np.testing.assert_allclose(-float(jnp.mean(p.log_prob(x))), ev["test_nll_p"][i], rtol=1e-4, atol=1e-4)
    with pytest.raises(ValueError, match="out of range"):
        aj.export_state(state, trainer.config, DIM, seed_index=2)
