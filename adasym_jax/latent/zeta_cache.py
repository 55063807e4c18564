"""ζ from a large sample refreshed only every K steps (Appendix D.3: 5000 samples every 100).

The paper: "we used 5000 samples to estimate ζ_ψ. To save time, we sampled the 5000 samples
only every 100 iterations." Here the *samples* y ~ p_θ' and their log-densities log p_θ'(y)
are cached in the state; every step re-evaluates the current EBM on them,

    log ζ̂ = logsumexp(log q̃_ψ(y_j) − log p_θ'(y_j)) − log M,

which is still an unbiased importance-sampling estimate of ζ_ψ with the slightly stale
proposal p_θ' (only its variance grows as θ drifts from θ'). Only the flow's sampling pass is
saved, not the EBM's forward pass on the M samples.

:class:`CachedState` is :class:`~adasym_jax.state.TrainState` plus the cache, so it works with
``Trainer.evaluate`` / ``sample``. :func:`make_cached_dual_step` is the dual step of
Algorithm 3 with log ζ̂ taken from the cache (same surrogates from
:mod:`adasym_jax.objective` as :func:`adasym_jax.train.make_dual_step`, and the same update
half, :func:`adasym_jax.train.primal_dual_update`; unconditional only);
:func:`make_cached_chunk` scans it with the refresh in a ``lax.cond`` on the *global step
index*, which is an unbatched scan input, so under ``vmap`` over seeds the cond stays a real
branch (a per-seed ``state.step`` predicate would turn it into a select that samples every
step). Refreshing every step (``every=1``) with M = ``config.num_zeta_samples`` is exactly the
core step's fresh-sample estimate: that is the "off" position of the switch.
"""

from __future__ import annotations

from typing import Callable

import flax.linen as nn
import jax
import jax.numpy as jnp

from adasym_jax import objective as obj
from adasym_jax.config import TrainConfig
from adasym_jax.jit import tuned_jit
from adasym_jax.state import TrainState
from adasym_jax.train import (
    make_train_step,
    primal_dual_update,
    psi_gradient,
    theta_gradient,
    zeta_and_power_iteration,
)

Array = jax.Array
sg = jax.lax.stop_gradient


class CachedState(TrainState):
    """TrainState plus the ζ cache: ``zeta_y (M, dim)`` samples of p_θ' and ``zeta_log_p (M,)``."""

    zeta_y: Array
    zeta_log_p: Array


def with_cache(state: TrainState, dim: int, num: int) -> CachedState:
    """Attach an empty (zero) cache of ``num`` samples to a single-seed ``state``."""
    fields = {k: getattr(state, k) for k in TrainState.__dataclass_fields__}
    return CachedState(**fields, zeta_y=jnp.zeros((num, dim), jnp.float32), zeta_log_p=jnp.zeros((num,), jnp.float32))


def core_state(state: CachedState) -> TrainState:
    """The TrainState part (e.g. for :func:`adasym_jax.checkpoint.save_checkpoint`)."""
    return TrainState(**{k: getattr(state, k) for k in TrainState.__dataclass_fields__})


def refresh_cache(flow: nn.Module, state: CachedState) -> CachedState:
    """Draw a fresh cache (size of ``state.zeta_y``) from the current p_θ, no gradient."""
    key, k = jax.random.split(state.key)
    num = state.zeta_y.shape[0]
    y, log_p = flow.apply({"params": state.flow_params}, k, num, method="sample_and_log_prob")
    return state.replace(key=key, zeta_y=sg(y), zeta_log_p=sg(log_p))


def make_cached_dual_step(config: TrainConfig, flow: nn.Module, ebm: nn.Module):
    """``step(state: CachedState, x (n, dim)) -> (state, metrics)``: Algorithm 3 with log ζ̂
    from the cache (one spectral power iteration on the cached samples, as the core step
    does on its M samples). Supports ``reverse_grad`` score/pathwise and ``zeta_grad``
    batch/importance (importance: ∇ψ ζ through the cached samples)."""
    if config.method not in ("adasym", "weighted"):
        raise ValueError(f"the cached-ζ step is for adasym/weighted, not {config.method!r}")
    if config.context_dim:
        raise ValueError("the cached-ζ step covers unconditional models")
    T = config.temperature

    def step(state: CachedState, x: Array):
        n = x.shape[0]
        n_rev = config.num_reverse_samples or n
        key, k_y = jax.random.split(state.key)
        theta, psi, lam = state.flow_params, state.ebm_params, state.lambdas
        y_m, log_p_m = state.zeta_y, state.zeta_log_p
        log_zeta, stats = zeta_and_power_iteration(ebm, psi, state.ebm_stats, y_m, None, log_p_m)
        y, log_p_y_s = flow.apply({"params": theta}, k_y, n_rev, method="sample_and_log_prob")
        y, log_p_y_s = sg(y), sg(log_p_y_s)
        g_psi, log_q_x, log_q_y = psi_gradient(
            config, ebm, {"params": psi, "spectral": stats}, lam, log_zeta, x, None, y, None, log_p_y_s, y_m, None, log_p_m
        )

        g_theta, log_p_x, log_p_y = theta_gradient(
            config, flow, ebm, theta, {"params": psi, "spectral": stats}, lam, x, None, y, None, log_q_y, k_y,
            log_p_y_sampled=log_p_y_s, log_zeta_y=log_zeta,
        )
        values = obj.constraint_values(log_p_x, log_q_x, log_p_y, log_q_y, log_zeta, T)
        return primal_dual_update(config, state, key, g_theta, g_psi, stats, values)

    return step


def make_cached_chunk(
    config: TrainConfig,
    flow: nn.Module,
    ebm: nn.Module,
    every: int,
    num_steps: int,
    n: int,
) -> Callable:
    """Compiled ``(states, x (n, dim), start) -> (states, metrics (seeds, num_steps))`` over
    a leading seed axis. Step ``t = start + i`` refreshes the cache first when ``t % every == 0``.
    Minibatches of ``config.batch_size`` rows are drawn at random (keyed by seed and step).
    ``config.method == "nf"`` runs maximum likelihood and never samples a cache.
    """
    if every < 1:
        raise ValueError(f"the ζ refresh period must be >= 1, got {every}")
    bs = config.batch_size
    minibatch = bs is not None and bs < n
    if config.method == "nf":
        core = make_train_step(config, flow, ebm)
        step: Callable = lambda s, xb: core(s, xb)  # noqa: E731
    else:
        step = make_cached_dual_step(config, flow, ebm)
    refresh = config.method != "nf"

    def one_seed(state: CachedState, x: Array, start: Array):
        def body(s, t):
            if refresh:
                s = jax.lax.cond(t % every == 0, lambda s_: refresh_cache(flow, s_), lambda s_: s_, s)
            if minibatch:
                # keyed by the step index too: the nf step never advances ``s.key``
                idx = jax.random.permutation(jax.random.fold_in(jax.random.fold_in(s.key, 0x5EED), t), n)[:bs]
                xb = x[idx]
            else:
                xb = x
            return step(s, xb)

        return jax.lax.scan(body, state, start + jnp.arange(num_steps))

    return tuned_jit(jax.vmap(one_seed, in_axes=(0, None, None)))
