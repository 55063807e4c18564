"""Trained models for plain JAX code: p_θ as a ``distrax.Distribution``, q_ψ as a log-density.

* :func:`to_distrax` wraps a :class:`~adasym_jax.flow.SplineFlow` and its variables in
  :class:`FlowDistribution`, a ``distrax.Distribution`` with ``event_shape (dim,)``: ``log_prob``,
  ``sample`` and ``sample_and_log_prob`` call the flow's own methods, so they agree with it to
  float32 round-off. The distribution is a pytree (jit arguments, vmap over parameters or
  contexts); a conditional flow is exported at one fixed context, p(x | c).
* :func:`to_energy` wraps a :class:`~adasym_jax.ebm.ResidualEBM` in :class:`EnergyDensity`:
  ``log_unnormalized(x)`` = log q̃_ψ(x) = f_ψ(x) / T and the log ζ estimate it carries
  (Algorithm 2: importance sampling from a proposal such as the exported flow), so
  ``log_prob(x)`` = log q̃_ψ(x) − log ζ̂.
* :func:`export_state` does both for one seed of a (stacked) :class:`TrainState`, e.g. one
  read by :func:`~adasym_jax.checkpoint.load_checkpoint`.

With a :class:`~adasym_jax.checkpoint.Standardization` both objects live in data space:
densities gain ``− Σ log std`` and samples are mapped back with ``z · std + mean``.
"""

from __future__ import annotations

import functools
from typing import Any, Mapping, Optional

import distrax
import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from adasym_jax.checkpoint import Standardization
from adasym_jax.config import EVAL_SEED, TrainConfig
from adasym_jax.ebm import ResidualEBM
from adasym_jax.flow import BaseSplineFlow, SplineFlow
from adasym_jax.objective import log_zeta_estimate
from adasym_jax.state import TrainState, build_models, num_stacked_seeds

Array = jax.Array


def _as_variables(variables: Any) -> dict:
    """``{"params": ...}`` as Flax expects; a bare parameter tree is wrapped."""
    if isinstance(variables, Mapping) and "params" in variables:
        return dict(variables)
    if isinstance(variables, Mapping):
        return {"params": variables}
    raise ValueError(f"variables must be a mapping such as {{'params': ...}}, got {type(variables).__name__}")


def _fixed_context(context: Any, context_dim: int, what: str) -> Optional[Array]:
    """A single context as ``(1, context_dim)`` (``None`` for unconditional models)."""
    if context_dim == 0:
        if context is not None:
            raise ValueError(f"this {what} has context_dim=0 but a context was given")
        return None
    if context is None:
        raise ValueError(f"this {what} is conditional (context_dim={context_dim}); pass the context to fix")
    shape = tuple(np.shape(context))
    if shape not in ((context_dim,), (1, context_dim)):
        raise ValueError(
            f"context must have shape ({context_dim},) or (1, {context_dim}): one fixed condition, "
            f"got {shape}; vmap over the export for many conditions"
        )
    if isinstance(context, jax.core.Tracer):
        return jnp.reshape(context, (1, context_dim)).astype(jnp.float32)
    arr = np.asarray(context, np.float32).reshape(1, context_dim)
    if not np.all(np.isfinite(arr)):
        raise ValueError("context contains NaN or infinite values")
    return jnp.asarray(arr)


def _check_points(value: Any, dim: int) -> Any:
    """Host-side checks of ``(..., dim)`` points (values only when concrete); no compilation."""
    shape = tuple(np.shape(value))
    if len(shape) == 0 or shape[-1] != dim:
        raise ValueError(f"points must have shape (..., {dim}), got {shape}")
    if not isinstance(value, jax.core.Tracer):
        arr = np.asarray(value)
        if arr.dtype.kind not in "fiu":
            raise ValueError(f"points must be numbers, got dtype {arr.dtype}")
        if not np.all(np.isfinite(arr)):
            raise ValueError("points contain NaN or infinite values")
    return value


def _flat(x: Array, dim: int) -> tuple[Array, tuple[int, ...]]:
    x = jnp.asarray(x)
    if not jnp.issubdtype(x.dtype, jnp.floating):
        x = x.astype(jnp.float32)
    return x.reshape((-1, dim)), tuple(x.shape[:-1])


# Compiled kernels, cached per (module, shapes): eager calls on an exported model compile once
# instead of dispatching the flow's layer scan op by op; inside an outer jit they are inlined.
@functools.partial(jax.jit, static_argnums=(0,))
def _flow_log_prob(flow: SplineFlow, variables: Any, x: Array, context: Optional[Array]) -> Array:
    flat, batch = _flat(x, flow.dim)
    return flow.apply(variables, flat, context, method="log_prob").reshape(batch)


@functools.partial(jax.jit, static_argnums=(0, 3))
def _flow_sample_and_log_prob(flow: SplineFlow, variables: Any, key: Array, n: int, context: Optional[Array]):
    return flow.apply(variables, key, n, context, method="sample_and_log_prob")


@functools.partial(jax.jit, static_argnums=(0, 1))
def _ebm_log_unnormalized(ebm: ResidualEBM, dim: int, variables: Any, x: Array, context, shift, scale) -> Array:
    flat, batch = _flat(x, dim)
    log_det = 0.0
    if shift is not None:
        flat = (flat - shift) / scale
        log_det = jnp.sum(jnp.log(scale))
    return (ebm.apply(variables, flat, context) - log_det).reshape(batch)


class FlowDistribution(distrax.Distribution):
    """The spline flow p_θ (at a fixed context, if conditional) as a ``distrax.Distribution``.

    ``event_shape == (dim,)``, ``batch_shape == ()``. ``log_prob`` takes ``(..., dim)`` and
    returns ``(...)``; ``sample(seed=key, sample_shape=s)`` returns ``s + (dim,)``.
    Build it with :func:`to_distrax`.
    """

    def __init__(self, flow: SplineFlow, variables: Any, context: Optional[Array] = None):
        super().__init__()
        if not isinstance(flow, BaseSplineFlow):
            raise ValueError(f"flow must be a spline flow (SplineFlow or AutoregressiveSplineFlow), got {type(flow).__name__}")
        self._flow = flow
        self._variables = _as_variables(variables)
        self._context = _fixed_context(context, flow.context_dim, "flow")

    @property
    def flow(self) -> SplineFlow:
        """The wrapped flow module."""
        return self._flow

    @property
    def variables(self) -> dict:
        """``{"params": θ}`` of the exported seed."""
        return self._variables

    @property
    def context(self) -> Optional[Array]:
        """The fixed condition ``(1, context_dim)``, or ``None``."""
        return self._context

    @property
    def event_shape(self) -> tuple[int, ...]:
        return (self._flow.dim,)

    @property
    def batch_shape(self) -> tuple[int, ...]:
        return ()

    def log_prob(self, value: Array) -> Array:
        """log p_θ(x | c): ``(..., dim) -> (...)``."""
        return _flow_log_prob(self._flow, self._variables, _check_points(value, self._flow.dim), self._context)

    def _sample_n(self, key: Array, n: int) -> Array:
        return self._sample_n_and_log_prob(key, n)[0]

    def _sample_n_and_log_prob(self, key: Array, n: int) -> tuple[Array, Array]:
        return _flow_sample_and_log_prob(self._flow, self._variables, key, int(n), self._context)


def to_distrax(
    flow: SplineFlow,
    variables: Any,
    context: Optional[Array] = None,
    *,
    standardization: Optional[Standardization] = None,
) -> distrax.Distribution:
    """p_θ as a ``distrax.Distribution`` with ``event_shape (dim,)``.

    Args:
      flow: the :class:`SplineFlow` module (e.g. ``Trainer(config, dim).flow``).
      variables: ``{"params": θ}`` for one seed (a bare θ tree is accepted too).
      context: for a conditional flow, the condition ``(context_dim,)`` or ``(1, context_dim)``;
        the result is p(x | c) at that condition.
      standardization: if the flow was trained on standardized data, the statistics; the result
        is then the density of the original data (a ``distrax.Transformed``).

    The result is a pytree: pass it through ``jax.jit`` or build it inside ``jax.vmap`` (over
    stacked parameters or contexts).
    """
    dist = FlowDistribution(flow, variables, context)
    if standardization is None:
        return dist
    if standardization.dim != flow.dim:
        raise ValueError(f"standardization has dim {standardization.dim}, the flow has dim {flow.dim}")
    affine = distrax.Block(
        distrax.ScalarAffine(shift=jnp.asarray(standardization.mean), scale=jnp.asarray(standardization.std)), 1
    )
    return distrax.Transformed(dist, affine)


class EnergyDensity(struct.PyTreeNode):
    """The EBM q_ψ(x) = q̃_ψ(x) / ζ with its log ζ estimate; a pytree (jit/vmap friendly).

    ``log_unnormalized(x)``: log q̃_ψ = f_ψ(x) / T, ``(..., dim) -> (...)``; ``log_zeta``: the
    scalar estimate log ζ̂ (``nan`` if none was computed); ``log_prob(x)`` = log q̃ − log ζ̂.
    Build it with :func:`to_energy`.
    """

    ebm: ResidualEBM = struct.field(pytree_node=False)
    dim: int = struct.field(pytree_node=False)
    variables: Any
    log_zeta: Array
    context: Optional[Array] = None
    shift: Optional[Array] = None  # standardization mean, or None
    scale: Optional[Array] = None  # standardization std, or None

    def log_unnormalized(self, x: Array) -> Array:
        """log q̃_ψ(x) (in data space if a standardization was given): ``(..., dim) -> (...)``."""
        x = _check_points(x, self.dim)
        return _ebm_log_unnormalized(self.ebm, self.dim, self.variables, x, self.context, self.shift, self.scale)

    def log_prob(self, x: Array) -> Array:
        """Estimated normalized log q_ψ(x) = log q̃_ψ(x) − log ζ̂: ``(..., dim) -> (...)``."""
        return self.log_unnormalized(x) - self.log_zeta

    def with_log_zeta(self, log_zeta: Array) -> "EnergyDensity":
        """A copy carrying another log ζ estimate."""
        return self.replace(log_zeta=jnp.asarray(log_zeta, jnp.float32))


def estimate_log_zeta(
    log_unnormalized: Any, proposal: distrax.Distribution, key: Array, num_samples: int = 10_000
) -> Array:
    """Algorithm 2: log ζ̂ = logsumexp(log q̃(y) − log p(y)) − log M with ``M = num_samples``
    draws ``y ~ proposal`` (any distrax distribution whose support covers q̃'s mass).

    ``log_unnormalized`` maps ``(M, dim) -> (M,)``. Returns a scalar; jit-compatible.
    """
    if int(num_samples) < 1:
        raise ValueError(f"num_samples must be >= 1, got {num_samples}")
    y, log_p = proposal.sample_and_log_prob(seed=key, sample_shape=(int(num_samples),))
    return log_zeta_estimate(log_unnormalized(y), log_p)


@functools.partial(jax.jit, static_argnums=(3,))
def _estimate_energy_log_zeta(energy: EnergyDensity, proposal: distrax.Distribution, key: Array, num: int) -> Array:
    return estimate_log_zeta(energy.log_unnormalized, proposal, key, num)


def to_energy(
    ebm: ResidualEBM,
    variables: Any,
    dim: int,
    log_zeta: Optional[Array] = None,
    *,
    context: Optional[Array] = None,
    proposal: Optional[distrax.Distribution] = None,
    key: Optional[Array] = None,
    num_samples: int = 10_000,
    standardization: Optional[Standardization] = None,
) -> EnergyDensity:
    """q_ψ as an unnormalized log-density plus its log ζ estimate.

    Args:
      ebm: the :class:`ResidualEBM` module (e.g. ``Trainer(config, dim).ebm``).
      variables: ``{"params": ψ, "spectral": u}`` for one seed.
      dim: data dimension.
      log_zeta: a known estimate of log ζ; if ``None`` and a ``proposal`` is given, it is
        estimated from ``num_samples`` draws of ``proposal`` (``key`` defaults to
        ``PRNGKey(0)``); otherwise ``nan``.
      context: for a FiLM-conditional EBM, one fixed condition ``(context_dim,)``.
      proposal: a distribution in the same space as the result (e.g. :func:`to_distrax` of the
        trained flow, with the same ``standardization``).
      standardization: data statistics if the EBM was trained on standardized data.
    """
    if not isinstance(ebm, ResidualEBM):
        raise ValueError(f"ebm must be a ResidualEBM, got {type(ebm).__name__}")
    if int(dim) < 1:
        raise ValueError(f"dim must be >= 1, got {dim}")
    if standardization is not None and standardization.dim != int(dim):
        raise ValueError(f"standardization has dim {standardization.dim}, the model has dim {dim}")
    variables = dict(variables) if isinstance(variables, Mapping) else variables
    if not isinstance(variables, dict) or "params" not in variables:
        raise ValueError("EBM variables must be a mapping {'params': ..., 'spectral': ...}")
    energy = EnergyDensity(
        ebm=ebm,
        dim=int(dim),
        variables=variables,
        log_zeta=jnp.asarray(jnp.nan, jnp.float32),
        context=_fixed_context(context, ebm.context_dim, "EBM"),
        shift=None if standardization is None else jnp.asarray(standardization.mean),
        scale=None if standardization is None else jnp.asarray(standardization.std),
    )
    if log_zeta is None and proposal is not None:
        key = jax.random.PRNGKey(0) if key is None else key
        if int(num_samples) < 1:
            raise ValueError(f"num_samples must be >= 1, got {num_samples}")
        log_zeta = _estimate_energy_log_zeta(energy, proposal, key, int(num_samples))
    return energy if log_zeta is None else energy.with_log_zeta(log_zeta)


def _seed_slice(tree: Any, index: int) -> Any:
    # Host-side indexing of concrete arrays: no per-shape compilation of a slice.
    return jax.tree.map(lambda a: a[index] if isinstance(a, jax.core.Tracer) else np.asarray(a)[index], tree)


def export_state(
    state: TrainState,
    config: TrainConfig,
    dim: int,
    seed_index: int = 0,
    *,
    context: Optional[Array] = None,
    standardization: Optional[Standardization] = None,
    key: Optional[Array] = None,
    num_zeta_samples: Optional[int] = None,
) -> tuple[distrax.Distribution, EnergyDensity]:
    """``(p_θ, q_ψ)`` of seed number ``seed_index`` of a stacked state (``Trainer.init``/``run``,
    :func:`~adasym_jax.runner.fit` or :func:`~adasym_jax.checkpoint.load_checkpoint`).

    log ζ̂ is estimated with ``num_zeta_samples`` (default ``config.eval_zeta_samples``) draws
    of the exported flow, as in :meth:`Trainer.evaluate`.
    """
    num_seeds = num_stacked_seeds(state)
    if num_seeds is None:
        raise ValueError("state must be stacked over seeds (a leading seed axis), as Trainer.init returns")
    if not -num_seeds <= seed_index < num_seeds:
        raise ValueError(f"seed_index {seed_index} is out of range for {num_seeds} seeds")
    flow, ebm = build_models(config, int(dim))
    p = to_distrax(
        flow, {"params": _seed_slice(state.flow_params, seed_index)}, context, standardization=standardization
    )
    ebm_vars = {"params": _seed_slice(state.ebm_params, seed_index), "spectral": _seed_slice(state.ebm_stats, seed_index)}
    m = config.eval_zeta_samples if num_zeta_samples is None else int(num_zeta_samples)
    q = to_energy(
        ebm,
        ebm_vars,
        dim,
        context=context,
        proposal=p,
        key=jax.random.PRNGKey(EVAL_SEED) if key is None else key,
        num_samples=m,
        standardization=standardization,
    )
    return p, q


__all__ = [
    "EnergyDensity",
    "FlowDistribution",
    "estimate_log_zeta",
    "export_state",
    "to_distrax",
    "to_energy",
]
