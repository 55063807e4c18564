"""grad_clip: θ's (and ψ's) gradients are clipped to a global norm before Adam; λ's never are.

The reference is Adam written out by hand in NumPy (float64) on jax.grad's gradient, so a clip
applied after Adam, per leaf instead of globally, or not at all fails the comparison."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import adasym_jax as aj
from adasym_jax.state import dual_optimizer


def _adam_by_hand(grads: list[np.ndarray], lr: float, b1: float, b2: float, clip: float | None, eps: float = 1e-8):
    """The total update after Adam steps on ``grads`` (each a flat vector), clipping first."""
    m = v = np.zeros_like(grads[0])
    total = np.zeros_like(grads[0])
    for t, g in enumerate(grads, start=1):
        if clip is not None:
            g = g * min(1.0, clip / np.linalg.norm(g))
        m, v = b1 * m + (1 - b1) * g, b2 * v + (1 - b2) * g * g
        total -= lr * (m / (1 - b1**t)) / (np.sqrt(v / (1 - b2**t)) + eps)
    return total


@pytest.mark.parametrize("clip", [None, 0.05])
def test_nf_step_is_adam_on_the_clipped_gradient(tiny_config, clip):
    cfg = tiny_config.replace(method="nf", grad_clip=clip, adam_b1=0.9, adam_b2=0.999, lr_flow=1e-2)
    trainer = aj.Trainer(cfg, 2)
    state = jax.tree.map(lambda a: a[0], trainer.init([0]))
    x = jnp.asarray(aj.load_dataset("moons", n_train=128, n_test=8)[0])
    flat0, unravel = jax.flatten_util.ravel_pytree(state.flow_params)

    def nll(flat):
        return -jnp.mean(trainer.flow.apply({"params": unravel(flat)}, x, None, method="log_prob"))

    grad = jax.jit(jax.grad(nll))
    step = jax.jit(trainer.step)
    grads, s = [], state
    for _ in range(3):
        grads.append(np.asarray(grad(jax.flatten_util.ravel_pytree(s.flow_params)[0]), np.float64))
        s, _ = step(s, x)
    if clip is not None:
        assert min(np.linalg.norm(g) for g in grads) > 2 * clip  # the clip is active at every step
    moved = np.asarray(jax.flatten_util.ravel_pytree(s.flow_params)[0], np.float64) - np.asarray(flat0, np.float64)
    want = _adam_by_hand(grads, cfg.lr_flow, cfg.adam_b1, cfg.adam_b2, clip)
    np.testing.assert_allclose(moved, want, atol=2e-5, rtol=1e-3)
    if clip is not None:  # the unclipped run goes elsewhere, so the comparison can tell them apart
        assert np.max(np.abs(want - _adam_by_hand(grads, cfg.lr_flow, cfg.adam_b1, cfg.adam_b2, None))) > 1e-3


def test_multipliers_are_not_clipped(tiny_config):
    cfg = tiny_config.replace(grad_clip=1e-3)
    lam = {k: jnp.asarray(1.0) for k in ("fw", "rv", "prx", "zeta_u", "zeta_l")}
    g = {k: jnp.asarray(100.0) for k in lam}
    clipped, plain = dual_optimizer(cfg), dual_optimizer(cfg.replace(grad_clip=None))
    a, _ = clipped.update(g, clipped.init(lam), lam)
    b, _ = plain.update(g, plain.init(lam), lam)
    for k in lam:
        assert float(a[k]) == float(b[k])


@pytest.mark.parametrize("bad", [0.0, -1.0, float("nan"), float("inf"), True])
def test_bad_grad_clip_is_refused(bad):
    with pytest.raises(ValueError, match="grad_clip"):
        aj.TrainConfig(grad_clip=bad)
