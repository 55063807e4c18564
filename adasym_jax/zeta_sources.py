"""Where a dual step's flow samples come from: the ζ samples and the reverse-KL samples.

The dual step (:func:`adasym_jax.train.make_dual_step`) is the same for every experiment; only
the draw of its flow samples differs, and a *ζ source* is that draw:
``source(state, batch) -> Draw``. None of the samples carries gradient (the paper's
estimators); the pathwise θ gradient redraws the reverse-KL samples from ``Draw.key_y``.

* :func:`fresh_samples`: Algorithm 2 as printed, M new samples every step
  (``config.num_zeta_samples``; for a conditional model at conditions drawn from the batch,
  so ζ̂ estimates the mean partition function over conditions), and N reverse-KL samples.
* :func:`per_condition_samples`: B.6, K samples at every condition u_i of the batch, so that
  ζ(u_i) is estimated per condition (``config.zeta_per_condition`` = K ≥ 1), and one
  reverse-KL sample per condition.
* :func:`cached_samples`: D.3, "we sampled the 5000 samples only every 100 iterations": the
  M ζ samples and their log p_θ'(y) live in ``state.zeta_cache`` and are redrawn by
  :func:`refresh_zeta_cache` every ``config.zeta_refresh_every`` steps (the runner does it,
  :class:`adasym_jax.runner.Trainer`); each step re-evaluates the current EBM on them, which
  is still an unbiased importance-sampling estimate of ζ_ψ with the slightly stale proposal.

:func:`zeta_source` picks the one ``config`` asks for.
"""

from __future__ import annotations

from typing import Callable, NamedTuple, Optional

import flax.linen as nn
import jax
import jax.numpy as jnp

from adasym_jax.batch import Batch
from adasym_jax.config import TrainConfig
from adasym_jax.state import TrainState, new_zeta_cache

Array = jax.Array
sg = jax.lax.stop_gradient


class Samples(NamedTuple):
    """Flow samples without gradient: ``points (N, dim)``, their ``context (N, k)`` (``None``
    for an unconditional model) and ``log_p (N,)`` = log p_θ(points | context)."""

    points: Array
    context: Optional[Array]
    log_p: Array


class Draw(NamedTuple):
    """What a ζ source returns for one step.

    ``zeta``: the ζ samples (M of them; under B.6 ``num_conditions`` consecutive groups, one
    per condition of the batch); ``reverse``: the reverse-KL samples y; ``key_y``: the key y
    were drawn with; ``key``: the state's key for the next step; ``num_conditions``: ``n`` when
    ζ is estimated per condition (log ζ̂ is then ``(n,)``), else ``None`` (a scalar)."""

    zeta: Samples
    reverse: Samples
    key_y: Array
    key: Array
    num_conditions: Optional[int] = None


ZetaSource = Callable[[TrainState, Batch], Draw]


def _take_rows(context: Optional[Array], key: Array, num: int, n: int) -> Optional[Array]:
    """Conditions for ``num`` flow samples: the batch's own rows if ``num == n``, else drawn
    uniformly from the batch (so ζ̂ estimates the mean partition function over conditions)."""
    if context is None:
        return None
    if num == n:
        return context
    return context[jax.random.randint(key, (num,), 0, n)]


def concat_context(a: Optional[Array], b: Optional[Array]) -> Optional[Array]:
    """Row-wise concatenation of two contexts (``None`` for an unconditional model)."""
    return None if a is None else jnp.concatenate([a, b], axis=0)


def fresh_samples(config: TrainConfig, flow: nn.Module) -> ZetaSource:
    """M fresh ζ samples and N = ``config.num_reverse_samples`` (default: the batch size)
    reverse-KL samples per step, drawn in one pass of the flow (the same draws as two
    ``sample_and_log_prob`` calls with their keys)."""

    def source(state: TrainState, batch: Batch) -> Draw:
        x, ctx = batch
        n = x.shape[0]
        n_rev = config.num_reverse_samples or n
        m = config.num_zeta_samples
        key, k_y, k_m, k_cy, k_cm = jax.random.split(state.key, 5)
        ctx_y = _take_rows(ctx, k_cy, n_rev, n)
        ctx_m = _take_rows(ctx, k_cm, m, n)
        z = jnp.concatenate([flow.apply({}, k_m, m, method="base_sample"), flow.apply({}, k_y, n_rev, method="base_sample")])
        pts, log_p = flow.apply({"params": state.flow_params}, z, concat_context(ctx_m, ctx_y), method="push_base")
        pts, log_p = sg(pts), sg(log_p)
        return Draw(Samples(pts[:m], ctx_m, log_p[:m]), Samples(pts[m:], ctx_y, log_p[m:]), k_y, key)

    return source


def per_condition_samples(config: TrainConfig, flow: nn.Module) -> ZetaSource:
    """B.6: K = ``config.zeta_per_condition`` ζ samples at each of the batch's n conditions
    (``n·K`` flow samples, forward passes only) and one reverse-KL sample per condition
    (``config.num_reverse_samples`` does not apply)."""
    k_per = int(config.zeta_per_condition)
    if config.context_dim < 1:
        raise ValueError("zeta_per_condition needs a conditional model (config.context_dim >= 1)")
    if k_per < 1:
        raise ValueError(f"zeta_per_condition must be >= 1 for per-condition ζ, got {k_per}")

    def source(state: TrainState, batch: Batch) -> Draw:
        x, ctx = batch
        if ctx is None:
            raise ValueError("per-condition ζ needs a batch (β, u) with contexts u")
        n = x.shape[0]
        key, k_y, k_m = jax.random.split(state.key, 3)
        theta = {"params": state.flow_params}
        ctx_m = jnp.repeat(ctx, k_per, axis=0)
        y_m, log_p_m = flow.apply(theta, k_m, n * k_per, ctx_m, method="sample_and_log_prob")
        y, log_p_y = flow.apply(theta, k_y, n, ctx, method="sample_and_log_prob")
        return Draw(Samples(sg(y_m), ctx_m, sg(log_p_m)), Samples(sg(y), ctx, sg(log_p_y)), k_y, key, n)

    return source


def cached_samples(config: TrainConfig, flow: nn.Module) -> ZetaSource:
    """D.3: the ζ samples from ``state.zeta_cache`` (see :func:`refresh_zeta_cache`), N fresh
    reverse-KL samples per step. Unconditional models only."""
    if config.context_dim:
        raise ValueError("the cached ζ samples (zeta_refresh_every > 1) cover unconditional models")

    def source(state: TrainState, batch: Batch) -> Draw:
        if state.zeta_cache is None:
            raise ValueError("the cached ζ source needs a state with a zeta_cache (init_state makes one)")
        n_rev = config.num_reverse_samples or batch.x.shape[0]
        key, k_y = jax.random.split(state.key)
        y, log_p_y = flow.apply({"params": state.flow_params}, k_y, n_rev, method="sample_and_log_prob")
        cache = state.zeta_cache
        return Draw(Samples(cache["y"], None, cache["log_p"]), Samples(sg(y), None, sg(log_p_y)), k_y, key)

    return source


def refresh_zeta_cache(flow: nn.Module, state: TrainState) -> TrainState:
    """Redraw ``state.zeta_cache`` (same size) from the current p_θ; advances ``state.key``."""
    key, k = jax.random.split(state.key)
    num = state.zeta_cache["log_p"].shape[0]
    return state.replace(key=key, zeta_cache=new_zeta_cache(flow, state.flow_params, k, num))


def zeta_source(config: TrainConfig, flow: nn.Module) -> ZetaSource:
    """The ζ source ``config`` asks for: per condition when ``zeta_per_condition`` ≥ 1, the
    cache when ``zeta_refresh_every`` > 1, else fresh samples every step."""
    if config.zeta_per_condition:
        return per_condition_samples(config, flow)
    if config.zeta_refresh_every > 1:
        return cached_samples(config, flow)
    return fresh_samples(config, flow)
