"""Warm start of the EBM (Appendix B.8): regress log q̃_ψ = f_ψ / T onto log p_θ.

"Before starting training, we warm start f_ψ to produce values similar to the log
probabilities of p_θ in an iterative process. In each iteration, we sample from p_θ with the
log probabilities, compute the f_ψ values on the samples and minimize the mean squared error
between the two sets." Matching the EBM's log-density to the flow's makes q̃_ψ ≈ p_θ, so
ζ_ψ ≈ 1 and the importance weights exp(log q̃ − log p) ≈ 1 when the dual training starts.
The regression uses its own Adam optimizer; the state's ψ optimizer is left fresh.
"""

from __future__ import annotations

from typing import NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax

from adasym_jax.state import TrainState

Array = jax.Array


class WarmStartSettings(NamedTuple):
    """``steps`` Adam steps at ``lr`` on ``num_samples`` fresh flow samples each."""

    steps: int = 1000
    num_samples: int = 1000
    lr: float = 1e-3


def warm_start_ebm(flow: nn.Module, ebm: nn.Module, state: TrainState, settings: WarmStartSettings = WarmStartSettings()):
    """One seed: ``(state, losses (steps,))`` with ψ (and its spectral vectors) regressed so
    that ``ebm(y) ≈ log p_θ(y)`` on y ~ p_θ. Pure; ``jax.vmap`` it over seeds.

    The loss is mean (log q̃_ψ(y) − log p_θ(y))², in nats², on samples that carry no gradient.
    """
    if settings.steps < 1 or settings.num_samples < 1 or settings.lr <= 0:
        raise ValueError(f"warm start needs steps, num_samples >= 1 and lr > 0, got {settings}")
    tx = optax.adam(settings.lr)

    def body(carry, k):
        psi, stats, opt = carry
        y, log_p = flow.apply({"params": state.flow_params}, k, settings.num_samples, method="sample_and_log_prob")
        y, log_p = jax.lax.stop_gradient(y), jax.lax.stop_gradient(log_p)

        def loss(psi_):
            out, new = ebm.apply(
                {"params": psi_, "spectral": stats}, y, update_stats=True, mutable=["spectral"]
            )
            return jnp.mean((out - log_p) ** 2), new["spectral"]

        (val, stats), g = jax.value_and_grad(loss, has_aux=True)(psi)
        upd, opt = tx.update(g, opt, psi)
        return (optax.apply_updates(psi, upd), stats, opt), val

    key, k_ws = jax.random.split(state.key)
    keys = jax.random.split(k_ws, settings.steps)
    init = (state.ebm_params, state.ebm_stats, tx.init(state.ebm_params))
    (psi, stats, _), losses = jax.lax.scan(body, init, keys)
    return state.replace(key=key, ebm_params=psi, ebm_stats=stats), losses
