"""The train state pytree and its initialization (shared by the dual method and baselines)."""

from __future__ import annotations

from typing import Any, Optional

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax
from flax import struct

from adasym_jax.config import TrainConfig
from adasym_jax.ebm import ResidualEBM
from adasym_jax.autoregressive import AutoregressiveSplineFlow
from adasym_jax.flow import BaseSplineFlow, NSFCouplingFlow, SplineFlow
from adasym_jax.objective import KL_MULTIPLIERS, MULTIPLIER_NAMES, ZETA_MULTIPLIERS

Array = jax.Array


class TrainState(struct.PyTreeNode):
    """Everything that changes during training, as arrays (vmappable over a seed axis).

    ``flow_params`` θ; ``ebm_params`` ψ and ``ebm_stats`` (spectral-norm vectors u);
    ``lambdas`` dict name -> scalar (see :mod:`adasym_jax.objective`); optax states of the
    three optimizers; ``key`` the run's PRNG key (raw ``uint32[2]``); ``step`` the step count.
    ``zeta_cache``: ``None``, or for D.3's cached ζ (``config.zeta_refresh_every`` > 1,
    :func:`uses_zeta_cache`) ``{"y": (M, dim), "log_p": (M,)}``, M samples of p_θ' and their
    log-densities (:mod:`adasym_jax.zeta_sources`).
    """

    step: Array
    key: Array
    flow_params: Any
    ebm_params: Any
    ebm_stats: Any
    lambdas: dict
    flow_opt: Any
    ebm_opt: Any
    dual_opt: Any
    zeta_cache: Any = None


FLOW_CLASSES = {"autoregressive": AutoregressiveSplineFlow, "coupling": SplineFlow, "nsf": NSFCouplingFlow}


def num_stacked_seeds(state: TrainState) -> Optional[int]:
    """``S`` for a state stacked over seeds (``state.step`` of shape ``(S,)``, as
    ``Trainer.init`` returns); ``None`` for a single unstacked state."""
    shape = jax.numpy.shape(state.step)
    return int(shape[0]) if len(shape) == 1 else None


def build_models(config: TrainConfig, dim: int) -> tuple[BaseSplineFlow, ResidualEBM]:
    """The flow p_θ (``config.flow``: :class:`AutoregressiveSplineFlow`, the coupling
    :class:`SplineFlow` or sbi's :class:`NSFCouplingFlow`) and the EBM q_ψ described by ``config`` for data of dimension ``dim``."""
    flow = FLOW_CLASSES[config.flow](
        dim=dim,
        num_transforms=config.num_transforms,
        num_bins=config.num_bins,
        hidden=config.flow_hidden,
        bound=config.bound,
        context_dim=config.context_dim,
        unroll_layers=config.unroll_flow,
    )
    ebm = ResidualEBM(
        hidden=config.ebm_hidden,
        num_blocks=config.ebm_blocks,
        context_dim=config.context_dim,
        film_layers=config.film_layers,
        temperature=config.temperature,
        base_scale=config.ebm_base_scale,
    )
    return flow, ebm


def adam(lr: float, config: TrainConfig) -> optax.GradientTransformation:
    """Adam with the paper's β = (adam_b1, adam_b2) (C.3: (0, 0.9)), after clipping the
    gradient to global norm ``config.grad_clip`` when that is set (sbi's NPE: 5.0)."""
    tx = _adam(lr, config)
    return tx if config.grad_clip is None else optax.chain(optax.clip_by_global_norm(config.grad_clip), tx)


def _adam(lr: float, config: TrainConfig) -> optax.GradientTransformation:
    """Adam with ``config``'s β and no clipping (the multipliers' optimizer; :func:`adam` adds the clip)."""
    return optax.adam(lr, b1=config.adam_b1, b2=config.adam_b2)


def dual_optimizer(config: TrainConfig) -> optax.GradientTransformation:
    """Optimizer of the multipliers (fed the *negated* ascent direction), one LR per group."""
    # the same Adam β as θ and ψ, never clipped (grad_clip is for the models' parameters)
    make = (lambda lr: optax.sgd(lr)) if config.dual_optimizer == "sgd" else (lambda lr: _adam(lr, config))
    labels = {n: ("kl" if n in KL_MULTIPLIERS else "zeta") for n in MULTIPLIER_NAMES}
    return optax.multi_transform({"kl": make(config.lr_dual), "zeta": make(config.lr_dual_zeta)}, labels)


def initial_lambdas(config: TrainConfig) -> dict[str, Array]:
    """λ at step 0: fixed weights for P-W, ``lambda_init`` / ``lambda_zeta_init`` otherwise."""
    if config.method == "weighted":
        w_fw, w_rv, w_prx = config.weights
        vals = {"fw": w_fw, "rv": w_rv, "prx": w_prx, "zeta_u": 0.0, "zeta_l": 0.0}
    else:
        vals = {n: (config.lambda_init if n in KL_MULTIPLIERS else config.lambda_zeta_init) for n in MULTIPLIER_NAMES}
    return {k: jnp.asarray(v, jnp.float32) for k, v in vals.items()}


def uses_zeta_cache(config: TrainConfig) -> bool:
    """Whether ``config``'s step reads ``state.zeta_cache``: a dual method (adasym, weighted)
    with ``zeta_refresh_every`` > 1."""
    return config.method in ("adasym", "weighted") and config.zeta_refresh_every > 1


def new_zeta_cache(flow: nn.Module, flow_params, key: Array, num: int) -> dict[str, Array]:
    """``{"y": (num, dim), "log_p": (num,)}``: ``num`` samples of p_θ and their log-densities
    (no gradient)."""
    y, log_p = flow.apply({"params": flow_params}, key, num, method="sample_and_log_prob")
    return {"y": jax.lax.stop_gradient(y), "log_p": jax.lax.stop_gradient(log_p)}


def init_state(
    config: TrainConfig,
    flow: nn.Module,
    ebm: nn.Module,
    key: Array,
    dim: int,
    lambdas: Optional[dict] = None,
) -> TrainState:
    """Fresh state for one seed from ``key`` (raw ``uint32[2]``). Pure; vmap it over keys.

    ``lambdas`` overrides :func:`initial_lambdas` (e.g. a vmapped grid of P-W weights).
    """
    k_flow, k_ebm, k_run = jax.random.split(key, 3)
    x0 = jnp.zeros((1, dim), jnp.float32)
    c0 = jnp.zeros((1, config.context_dim), jnp.float32) if config.context_dim else None
    flow_params = flow.init(k_flow, x0, c0)["params"]
    ebm_vars = ebm.init(k_ebm, x0, c0)
    lam = initial_lambdas(config) if lambdas is None else {k: jnp.asarray(v, jnp.float32) for k, v in lambdas.items()}
    cache = None
    if uses_zeta_cache(config):  # a usable cache from the start; the runner redraws it at step 0
        cache = new_zeta_cache(flow, flow_params, jax.random.fold_in(k_run, 0x7A), config.num_zeta_samples)
    return TrainState(
        zeta_cache=cache,
        step=jnp.zeros((), jnp.int32),
        key=k_run,
        flow_params=flow_params,
        ebm_params=ebm_vars["params"],
        ebm_stats=ebm_vars["spectral"],
        lambdas=lam,
        flow_opt=adam(config.lr_flow, config).init(flow_params),
        ebm_opt=adam(config.lr_ebm, config).init(ebm_vars["params"]),
        dual_opt=dual_optimizer(config).init(lam),
    )
