"""B.8 recipe pieces: warm start, the cached-ζ source (``zeta_refresh_every``) and its refresh schedule."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from adasym_jax import objective as obj
from adasym_jax.config import TrainConfig
from adasym_jax.latent.warmstart import WarmStartSettings, warm_start_ebm
from adasym_jax.runner import Trainer
from adasym_jax.state import build_models, init_state

DIM, M = 4, 64
CFG = TrainConfig(
    num_transforms=2, num_bins=4, flow_hidden=(16,), ebm_blocks=1, ebm_hidden=16,
    temperature=0.1, num_zeta_samples=M, batch_size=32, zeta_refresh_every=3,
)


@pytest.fixture(scope="module")
def models():
    return build_models(CFG, DIM)


@pytest.fixture(scope="module")
def state(models):
    flow, ebm = models
    return init_state(CFG, flow, ebm, jax.random.PRNGKey(0), DIM)


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
    assert new.zeta_cache is not None
    # the flow is untouched; ζ̂ of the warm-started EBM is close to 1
    chex_equal = jax.tree.map(lambda a, b: np.array_equal(a, b), new.flow_params, state.flow_params)
    assert all(jax.tree.leaves(chex_equal))
    y, log_p = flow.apply({"params": new.flow_params}, jax.random.PRNGKey(9), 4000, method="sample_and_log_prob")
    log_zeta = obj.log_zeta_estimate(ebm.apply({"params": new.ebm_params, "spectral": new.ebm_stats}, y), log_p)
    assert abs(float(log_zeta)) < 1.0


def test_initial_cache_is_flow_samples(models, state, tmp_path):
    """init_state draws a usable cache: M samples with their log p_θ; a checkpoint keeps it."""
    flow, _ = models
    y, lp = state.zeta_cache["y"], state.zeta_cache["log_p"]
    assert y.shape == (M, DIM) and lp.shape == (M,)
    np.testing.assert_allclose(flow.apply({"params": state.flow_params}, y, method="log_prob"), lp, rtol=1e-4, atol=1e-4)
    assert init_state(CFG.replace(zeta_refresh_every=1), *models, jax.random.PRNGKey(0), DIM).zeta_cache is None
    from adasym_jax.checkpoint import load_checkpoint, save_checkpoint

    states = jax.tree.map(lambda a: a[None], state)
    save_checkpoint(tmp_path, states, CFG, DIM, [0])
    loaded, _ = load_checkpoint(tmp_path)
    np.testing.assert_array_equal(loaded.zeta_cache["y"], states.zeta_cache["y"])


def test_refresh_only_on_multiples_of_k(models, state):
    flow, ebm = models
    trainer = Trainer(CFG, DIM)
    states = jax.tree.map(lambda a: jnp.stack([a, a]), state)  # two "seeds" with their own keys
    states = states.replace(key=jnp.stack([jax.random.PRNGKey(1), jax.random.PRNGKey(2)]), step=jnp.array([1, 1], jnp.int32))
    x = jax.random.normal(jax.random.PRNGKey(4), (100, DIM))
    chunk = trainer.chunk(1, 100)
    s1, _ = chunk(states, x, None)  # step index 1: no refresh, the initial cache stays
    np.testing.assert_array_equal(s1.zeta_cache["y"], states.zeta_cache["y"])
    s1 = s1.replace(step=jnp.array([3, 3], jnp.int32))
    s2, m2 = chunk(s1, x, None)  # step index 3: refresh before the step, from the pre-step θ
    assert not np.allclose(s2.zeta_cache["y"], s1.zeta_cache["y"])
    lp = jax.vmap(lambda p, y: flow.apply({"params": p}, y, method="log_prob"))(s1.flow_params, s2.zeta_cache["y"])
    np.testing.assert_allclose(lp, s2.zeta_cache["log_p"], rtol=1e-4, atol=1e-4)
    assert not np.allclose(s2.zeta_cache["y"][0], s2.zeta_cache["y"][1])  # independent per seed
    # the step's log ζ̂ is Algorithm 2 on the cached samples with the pre-step ψ
    for i in range(2):
        log_q, _ = ebm.apply(
            {"params": jax.tree.map(lambda a: a[i], s1.ebm_params), "spectral": jax.tree.map(lambda a: a[i], s1.ebm_stats)},
            s2.zeta_cache["y"][i], update_stats=True, mutable=["spectral"],
        )
        want = obj.log_zeta_estimate(log_q, s2.zeta_cache["log_p"][i])
        assert float(m2["log_zeta"][i, 0]) == pytest.approx(float(want), abs=1e-5)
    s3, _ = chunk(s2, x, None)  # step index 4: cache unchanged
    np.testing.assert_array_equal(s3.zeta_cache["y"], s2.zeta_cache["y"])


def test_bad_settings():
    with pytest.raises(ValueError, match="zeta_refresh_every"):
        TrainConfig(zeta_refresh_every=0)
    with pytest.raises(ValueError, match="unconditional"):
        TrainConfig(zeta_refresh_every=5, context_dim=2)
