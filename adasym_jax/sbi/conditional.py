"""The conditional dual step of Appendix B.6: p_θ(β | u) and q_ψ(β | u) trained together.

Per step, on a batch of simulations (β_i, u_i), i = 1..n:

* forward NLL  −mean_i log p_θ(β_i | u_i);
* reverse KL   T · mean_i [log p_θ(y_i | u_i) − log q̃_ψ(y_i | u_i) + log ζ(u_i)], y_i ~ p_θ(· | u_i);
* proxy NLL    −mean_i [log q̃_ψ(β_i | u_i) − log ζ(u_i)]  (a partition function per condition);
* ζ constraint 1 ≤ mean_i ζ(u_i) ≤ 1 + ε_ζ.

Each ζ(u_i) is estimated by importance sampling (Algorithm 2) from ``K`` flow samples drawn
at that condition (``zeta_per_condition``): ``n·K`` forward passes of the EBM. The ψ
gradient is eq. (15) written per condition,

  −λ_prx mean_i ∇f(β_i) − λ_rv T mean_i ∇f(y_i) + mean_i c_i ∇ζ(u_i),
  c_i = (λ_rv T + λ_prx) / ζ(u_i) + λ_u − λ_l,

with ∇ζ(u_i) ≈ w(y_i) ∇f(y_i) from the reverse-KL sample (``zeta_grad="batch"``, eq. (15) as
printed; the K samples then need a forward pass only) or the mean over the K samples
(``"importance"``, eq. (14)). θ and λ use :mod:`adasym_jax.objective` unchanged; the
constraint values are :func:`~adasym_jax.objective.constraint_values` with the mean of log ζ(u_i)
(rv and prx are linear in it) and ``zeta`` replaced by mean_i ζ(u_i).
"""

from __future__ import annotations

from typing import Mapping

import flax.linen as nn
import jax
import jax.numpy as jnp

from adasym_jax import objective as obj
from adasym_jax.config import TrainConfig
from adasym_jax.state import TrainState
from adasym_jax.train import StepFn, as_batch, primal_dual_update, psi_gradient, theta_gradient, zeta_and_power_iteration

Array = jax.Array
sg = jax.lax.stop_gradient

#: Default K, flow samples per condition for ζ(u_i). Measured (benchmarks/results/sbi.md): after
#: 150 steps the importance weights are heavy-tailed and log ζ̂(u_i) is biased low by ≈ 3.5–3.9
#: nats at K = 1, ≈ 2.4 at K = 4, ≈ 0.8–1.0 at K = 32 (truth: K = 4096); a step with K = 4 took
#: 1.3× the time of K = 1 (batch 1000, 5 seeds). K = 4 buys a third of the bias back for that
#: price; mean_i ζ̂(u_i), the constraint's value, is unbiased for every K.
DEFAULT_ZETA_PER_CONDITION = 4


def conditional_constraint_values(
    log_p_x: Array, log_q_x: Array, log_p_y: Array, log_q_y: Array, log_zeta: Array, temperature: float = 1.0
) -> dict[str, Array]:
    """B.6's constraint values (scalars) from per-condition arrays ``(n,)`` and ``log_zeta (n,)``."""
    values = obj.constraint_values(log_p_x, log_q_x, log_p_y, log_q_y, jnp.mean(log_zeta), temperature)
    values["zeta"] = jnp.mean(jnp.exp(log_zeta))
    return values


def make_conditional_step(
    config: TrainConfig, flow: nn.Module, ebm: nn.Module, zeta_per_condition: int = DEFAULT_ZETA_PER_CONDITION
) -> StepFn:
    """The conditional dual step (B.6) with the paper's estimators: ``step(state, batch)``.

    ``batch`` is ``(β (n, d), u (n, k))``; one reverse-KL sample per condition
    (``config.num_reverse_samples`` is ignored); ``config.num_zeta_samples`` is ignored in favour
    of ``zeta_per_condition`` K. Pure, jit-able and vmappable over seeds like
    :func:`adasym_jax.train.make_train_step`.
    """
    if config.context_dim < 1:
        raise ValueError("the conditional step needs config.context_dim >= 1")
    if config.method != "adasym":
        raise ValueError(f"the conditional dual step is method 'adasym', got {config.method!r}")
    if zeta_per_condition < 1:
        raise ValueError(f"zeta_per_condition must be >= 1, got {zeta_per_condition}")
    T, K = config.temperature, int(zeta_per_condition)

    def step(state: TrainState, batch) -> tuple[TrainState, dict]:
        x, ctx = as_batch(batch)
        if ctx is None:
            raise ValueError("the conditional step needs a batch (β, u) with contexts u")
        n = x.shape[0]
        key, k_y, k_m = jax.random.split(state.key, 3)
        theta, psi, lam = state.flow_params, state.ebm_params, state.lambdas

        # ζ(u_i) from K flow samples per condition: forward passes only, plus the power iteration.
        ctx_m = jnp.repeat(ctx, K, axis=0)
        y_m, log_p_m = flow.apply({"params": theta}, k_m, n * K, ctx_m, method="sample_and_log_prob")
        y_m, log_p_m = sg(y_m), sg(log_p_m)
        log_zeta, stats = zeta_and_power_iteration(ebm, psi, state.ebm_stats, y_m, ctx_m, log_p_m, num_conditions=n)

        # One reverse-KL sample per condition (no gradient in the paper's estimator).
        y, log_p_y_s = flow.apply({"params": theta}, k_y, n, ctx, method="sample_and_log_prob")
        y, log_p_y_s = sg(y), sg(log_p_y_s)

        g_psi, log_q_x, log_q_y = psi_gradient(
            config, ebm, {"params": psi, "spectral": stats}, lam, log_zeta, x, ctx, y, ctx, log_p_y_s, y_m, ctx_m, log_p_m
        )

        g_theta, log_p_x, log_p_y = theta_gradient(
            config, flow, ebm, theta, {"params": psi, "spectral": stats}, lam, x, ctx, y, ctx, log_q_y, k_y,
            log_p_y_sampled=log_p_y_s, log_zeta_y=log_zeta,
        )

        values = conditional_constraint_values(log_p_x, log_q_x, log_p_y, log_q_y, log_zeta, T)
        extra = {
            "log_zeta": jnp.mean(log_zeta),
            "zeta_mean": values["zeta"],
            "log_zeta_spread": jnp.std(log_zeta),
        }
        return primal_dual_update(config, state, key, g_theta, g_psi, stats, values, extra)

    return step

