"""ResidualEBM: spectral normalization, FiLM conditioning, temperature, architecture."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from adasym_jax import ResidualEBM
from adasym_jax.ebm import SpectralDense


def test_spectral_dense_largest_singular_value_is_one():
    layer = SpectralDense(12)
    x0 = jnp.zeros((1, 7))
    v = layer.init(jax.random.PRNGKey(0), x0)
    # make the raw kernel large and ill-conditioned
    v = {**v, "params": {**v["params"], "kernel": 9.0 * jax.random.normal(jax.random.PRNGKey(1), (7, 12))}}
    stats = v["spectral"]
    for _ in range(60):  # one power iteration per training call
        _, upd = layer.apply({**v, "spectral": stats}, x0, update_stats=True, mutable=["spectral"])
        stats = upd["spectral"]
    vv = {**v, "spectral": stats}
    eff = layer.apply(vv, jnp.eye(7)) - layer.apply(vv, jnp.zeros((7, 7)))  # kernel / σ
    s = np.linalg.svd(np.asarray(eff), compute_uv=False)
    assert s[0] <= 1.0 + 1e-3 and s[0] >= 0.99, s[0]
    raw = np.linalg.svd(np.asarray(v["params"]["kernel"]), compute_uv=False)[0]
    assert raw > 5.0  # the normalization did something


def test_stats_change_only_when_updated():
    ebm = ResidualEBM(hidden=8, num_blocks=1)
    x = jax.random.normal(jax.random.PRNGKey(2), (5, 2))
    v = ebm.init(jax.random.PRNGKey(3), x)
    _, upd = ebm.apply(v, x, update_stats=True, mutable=["spectral"])
    changed = jax.tree.map(lambda a, b: bool(jnp.any(a != b)), v["spectral"], upd["spectral"])
    assert any(jax.tree.leaves(changed))
    _, same = ebm.apply(v, x, update_stats=False, mutable=["spectral"])
    assert all(jax.tree.leaves(jax.tree.map(lambda a, b: bool(jnp.all(a == b)), v["spectral"], same["spectral"])))


def test_architecture_has_spectral_norm_on_hidden_layers_only():
    ebm = ResidualEBM(hidden=8, num_blocks=3)
    v = ebm.init(jax.random.PRNGKey(4), jnp.zeros((1, 2)))
    n_spectral = len(jax.tree.leaves(v["spectral"]))
    assert n_spectral == 1 + 2 * 3  # input layer + two per residual block; output layer plain
    assert v["params"]["Dense_0"]["kernel"].shape == (8, 1)
    alphas = [v["params"][f"_ResidualBlock_{i}"]["alpha"] for i in range(3)]
    np.testing.assert_allclose(alphas, 1.0)


def test_temperature_divides_the_output():
    x = jax.random.normal(jax.random.PRNGKey(5), (6, 3))
    e1 = ResidualEBM(hidden=8, num_blocks=2, temperature=1.0)
    e2 = ResidualEBM(hidden=8, num_blocks=2, temperature=0.01)
    v = e1.init(jax.random.PRNGKey(6), x)
    np.testing.assert_allclose(e2.apply(v, x), 100.0 * e1.apply(v, x), rtol=1e-5)
    assert e1.apply(v, x).shape == (6,)


def test_film_path_uses_the_context():
    ebm = ResidualEBM(hidden=8, num_blocks=2, context_dim=3, film_layers=2)
    x = jax.random.normal(jax.random.PRNGKey(7), (4, 2))
    c1, c2 = jnp.zeros((4, 3)), jnp.ones((4, 3))
    v = ebm.init(jax.random.PRNGKey(8), x, c1)
    # FiLM starts as the identity (γ = 1, β = 0) ...
    np.testing.assert_allclose(ebm.apply(v, x, c1), ebm.apply(v, x, c2), atol=1e-6)
    # ... and once its weights move, the output depends on the context
    leaves, tree = jax.tree.flatten(v["params"])
    keys = jax.random.split(jax.random.PRNGKey(9), len(leaves))
    params = jax.tree.unflatten(tree, [p + 0.3 * jax.random.normal(k, p.shape) for p, k in zip(leaves, keys)])
    v2 = {**v, "params": params}
    assert float(jnp.max(jnp.abs(ebm.apply(v2, x, c1) - ebm.apply(v2, x, c2)))) > 1e-3
    g = jax.grad(lambda c: jnp.sum(ebm.apply(v2, x, c)))(c1)
    assert float(jnp.max(jnp.abs(g))) > 1e-4
    # one context row broadcasts over the batch
    np.testing.assert_allclose(ebm.apply(v2, x, c2[:1]), ebm.apply(v2, x, c2), atol=1e-6)


def test_bad_input():
    ebm = ResidualEBM(hidden=8, num_blocks=1, context_dim=2)
    x = jnp.zeros((3, 2))
    v = ebm.init(jax.random.PRNGKey(0), x, jnp.zeros((3, 2)))
    with pytest.raises(ValueError, match="context"):
        ebm.apply(v, x)
    with pytest.raises(ValueError, match="context"):
        ebm.apply(v, x, jnp.zeros((3, 5)))
    with pytest.raises(ValueError, match="NaN"):
        ebm.apply(v, x.at[0, 0].set(jnp.inf), jnp.zeros((3, 2)))
