"""B.8 recipe pieces: warm start, the cached-ζ step and its refresh schedule."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from adasym_jax import objective as obj
from adasym_jax.config import TrainConfig
from adasym_jax.latent.warmstart import WarmStartSettings, warm_start_ebm
from adasym_jax.latent.zeta_cache import (
    CachedState,
    core_state,
    make_cached_chunk,
    make_cached_dual_step,
    with_cache,
)
from adasym_jax.state import TrainState, build_models, init_state

DIM, M = 4, 64
CFG = TrainConfig(
    num_transforms=2, num_bins=4, flow_hidden=(16,), ebm_blocks=1, ebm_hidden=16,
    temperature=0.1, num_zeta_samples=M, batch_size=32,
)


@pytest.fixture(scope="module")
def models():
    return build_models(CFG, DIM)


@pytest.fixture(scope="module")
def state(models):
    flow, ebm = models
    return with_cache(init_state(CFG, flow, ebm, jax.random.PRNGKey(0), DIM), DIM, M)


def _ebm_mse(flow, ebm, s, key):
    y, log_p = flow.apply({"params": s.flow_params}, key, 512, method="sample_and_log_prob")
    out = ebm.apply({"params": s.ebm_params, "spectral": s.ebm_stats}, y)
    return float(jnp.mean((out - log_p) ** 2))


def test_warm_start_matches_ebm_to_flow(models, state):
    flow, ebm = models
    before = _ebm_mse(flow, ebm, state, jax.random.PRNGKey(5))
    new, losses = jax.jit(lambda s: warm_start_ebm(flow, ebm, s, WarmStartSettings(120, 128, 3e-3)))(state)
    after = _ebm_mse(flow, ebm, new, jax.random.PRNGKey(5))
    assert losses.shape == (120,)
    assert after < 0.05 * before  # log q̃ = f/T regressed onto log p (T = 0.1: f ≈ 0.1 log p)
    assert isinstance(new, CachedState)
    # the flow is untouched; ζ̂ of the warm-started EBM is close to 1
    chex_equal = jax.tree.map(lambda a, b: np.array_equal(a, b), new.flow_params, state.flow_params)
    assert all(jax.tree.leaves(chex_equal))
    y, log_p = flow.apply({"params": new.flow_params}, jax.random.PRNGKey(9), 4000, method="sample_and_log_prob")
    log_zeta = obj.log_zeta_estimate(ebm.apply({"params": new.ebm_params, "spectral": new.ebm_stats}, y), log_p)
    assert abs(float(log_zeta)) < 1.0


def test_cache_round_trip(state):
    core = core_state(state)
    assert type(core) is TrainState
    assert set(TrainState.__dataclass_fields__) <= set(CachedState.__dataclass_fields__)
    assert state.zeta_y.shape == (M, DIM) and state.zeta_log_p.shape == (M,)


def test_refresh_only_on_multiples_of_k(models, state):
    flow, ebm = models
    states = jax.tree.map(lambda a: jnp.stack([a, a]), state)  # two "seeds" with their own keys
    states = states.replace(key=jnp.stack([jax.random.PRNGKey(1), jax.random.PRNGKey(2)]))
    x = jax.random.normal(jax.random.PRNGKey(4), (100, DIM))
    chunk = make_cached_chunk(CFG, flow, ebm, every=3, num_steps=1, n=100)
    s1, _ = chunk(states, x, 1)  # step 1: no refresh, the zero cache stays
    assert float(jnp.abs(s1.zeta_y).max()) == 0.0
    s2, m2 = chunk(s1, x, 3)  # step 3: refresh before the step, from the pre-step θ
    assert float(jnp.abs(s2.zeta_y).max()) > 0.0
    lp = jax.vmap(lambda p, y: flow.apply({"params": p}, y, method="log_prob"))(s1.flow_params, s2.zeta_y)
    np.testing.assert_allclose(lp, s2.zeta_log_p, rtol=1e-4, atol=1e-4)
    assert not np.allclose(s2.zeta_y[0], s2.zeta_y[1])  # independent per seed
    # the step's log ζ̂ is Algorithm 2 on the cached samples with the pre-step ψ
    for i in range(2):
        log_q, _ = ebm.apply(
            {"params": jax.tree.map(lambda a: a[i], s1.ebm_params), "spectral": jax.tree.map(lambda a: a[i], s1.ebm_stats)},
            s2.zeta_y[i], update_stats=True, mutable=["spectral"],
        )
        want = obj.log_zeta_estimate(log_q, s2.zeta_log_p[i])
        assert float(m2["log_zeta"][i, 0]) == pytest.approx(float(want), abs=1e-5)
    s3, _ = chunk(s2, x, 4)  # step 4: cache unchanged
    np.testing.assert_array_equal(s3.zeta_y, s2.zeta_y)


def test_bad_settings():
    flow, ebm = build_models(CFG, DIM)
    with pytest.raises(ValueError):
        make_cached_chunk(CFG, flow, ebm, every=0, num_steps=1, n=10)
    with pytest.raises(ValueError):
        make_cached_dual_step(CFG.replace(method="nf"), flow, ebm)
