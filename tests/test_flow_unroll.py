"""The flow's scan over its layers traced unrolled (``unroll_layers``, the default; config
``unroll_flow``) against the rolled loop: same parameters, same densities, samples and
gradients, and the option reaches the compiled program.

float32 at init-scale-like perturbations (0.1); the two programs differ only in XLA's fusion and
reduction order, so agreement is to a few float32 ulps."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import adasym_jax as aj

CLASSES = {"autoregressive": aj.AutoregressiveSplineFlow, "coupling": aj.SplineFlow, "nsf": aj.NSFCouplingFlow}


def _scan_unrolls(jaxpr) -> list[tuple[int, int]]:
    """(length, unroll) of every ``scan`` in a jaxpr, nested ones included."""
    out = []
    for eqn in jaxpr.eqns:
        if eqn.primitive.name == "scan":
            out.append((int(eqn.params["length"]), int(eqn.params["unroll"])))
        for value in eqn.params.values():
            for sub in value if isinstance(value, (tuple, list)) else (value,):
                inner = getattr(sub, "jaxpr", sub)
                if hasattr(inner, "eqns"):
                    out += _scan_unrolls(inner)
    return out


def _pair(kind: str, context_dim: int = 0):
    flows = [CLASSES[kind](dim=3, num_transforms=4, num_bins=5, hidden=(16, 16), bound=4.0, context_dim=context_dim, unroll_layers=u) for u in (True, False)]
    c0 = jnp.zeros((1, context_dim)) if context_dim else None
    params = [f.init(jax.random.PRNGKey(3), jnp.zeros((1, 3)), c0) for f in flows]
    return flows, params


@pytest.mark.parametrize("kind", sorted(CLASSES))
def test_unrolled_and_rolled_layers_agree(kind):
    context_dim = 2 if kind == "coupling" else 0
    (unrolled, rolled), (p_u, p_r) = _pair(kind, context_dim)
    # the same parameter tree and values from the same key: the option changes only the trace
    assert jax.tree.structure(p_u) == jax.tree.structure(p_r)
    for a, b in zip(jax.tree.leaves(p_u), jax.tree.leaves(p_r)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    leaves, tree = jax.tree.flatten(p_u)
    keys = jax.random.split(jax.random.PRNGKey(7), len(leaves))
    v = jax.tree.unflatten(tree, [p + 0.1 * jax.random.normal(k, p.shape) for p, k in zip(leaves, keys)])
    x = jax.random.normal(jax.random.PRNGKey(11), (64, 3))
    ctx = jax.random.normal(jax.random.PRNGKey(12), (64, context_dim)) if context_dim else None

    def lp(flow, v):
        return jax.jit(lambda v: flow.apply(v, x, ctx, method=flow.log_prob))(v)

    np.testing.assert_allclose(lp(unrolled, v), lp(rolled, v), rtol=1e-5, atol=1e-5)
    grads = [jax.jit(jax.grad(lambda v, f=f: jnp.mean(f.apply(v, x, ctx, method=f.log_prob))))(v) for f in (unrolled, rolled)]
    for a, b in zip(jax.tree.leaves(grads[0]), jax.tree.leaves(grads[1])):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)
    key = jax.random.PRNGKey(5)
    ys = [jax.jit(lambda v, f=f: f.apply(v, key, 64, ctx, method=f.sample_and_log_prob))(v) for f in (unrolled, rolled)]
    np.testing.assert_allclose(ys[0][0], ys[1][0], rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(ys[0][1], ys[1][1], rtol=1e-5, atol=1e-4)


def test_the_option_reaches_the_layer_scan():
    """Unrolled: the layer scan carries unroll = L; rolled: 1. (A flow whose option were ignored
    would trace both alike.)"""
    (unrolled, rolled), (v, _) = _pair("autoregressive")
    x = jnp.ones((5, 3))
    found = {}
    for name, flow in (("unrolled", unrolled), ("rolled", rolled)):
        jaxpr = jax.make_jaxpr(lambda v, f=flow: f.apply(v, x, method=f.log_prob))(v).jaxpr
        found[name] = [s for s in _scan_unrolls(jaxpr) if s[0] == flow.num_transforms]
    assert found["unrolled"] == [(4, 4)]
    assert found["rolled"] == [(4, 1)]


def test_config_unroll_flow_default_legacy_and_models():
    config = aj.TrainConfig()
    assert config.unroll_flow is True
    assert aj.build_models(config, 2)[0].unroll_layers is True
    assert aj.build_models(config.replace(unroll_flow=False), 2)[0].unroll_layers is False
    # a config saved before the field existed compiled the rolled loop and still loads
    saved = config.to_dict()
    del saved["unroll_flow"]
    assert aj.TrainConfig.from_dict(saved).unroll_flow is False
    assert aj.TrainConfig.from_dict(config.replace(unroll_flow=False).to_dict()).unroll_flow is False
