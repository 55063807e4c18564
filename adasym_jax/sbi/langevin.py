"""Sampling q_ψ(β | u) by Langevin dynamics (eq. (8)), started from p_θ samples (D.4).

  x_k = x_{k−1} + s ∇_x log q̃_ψ(x_{k−1} | u) + √(2s) z_{k−1},   z ~ N(0, I),

with the paper's 2000 steps of size s = 1e-4. Everything is one ``lax.scan``; the seed axis
of a stacked train state is handled by ``vmap`` (:func:`sample_q_seeds`).
"""

from __future__ import annotations

from typing import Any, Optional

import flax.linen as nn
import jax

from adasym_jax.langevin import langevin as run_langevin
from adasym_jax.runner import tuned_jit
from adasym_jax.state import TrainState

Array = jax.Array

LANGEVIN_STEPS = 2000
LANGEVIN_STEP_SIZE = 1e-4


def langevin(
    ebm: nn.Module,
    variables: Any,
    key: Array,
    x0: Array,
    context: Optional[Array] = None,
    num_steps: int = LANGEVIN_STEPS,
    step_size: float = LANGEVIN_STEP_SIZE,
) -> Array:
    """Run eq. (8) from ``x0 (n, d)`` on log q̃_ψ(· | context); returns ``(n, d)``.

    ``variables`` is ``{"params": ψ, "spectral": stats}``; ``context`` is ``(n, k)``, ``(1, k)``
    or ``None``. Pure and jit/vmap-able (``num_steps`` must be static).
    """
    return run_langevin(lambda x: ebm.apply(variables, x, context), x0, key, num_steps, step_size)


def sample_q(
    flow: nn.Module,
    ebm: nn.Module,
    state: TrainState,
    key: Array,
    num: int,
    context: Optional[Array] = None,
    num_steps: int = LANGEVIN_STEPS,
    step_size: float = LANGEVIN_STEP_SIZE,
) -> Array:
    """``num`` samples ``(num, d)`` of q_ψ(· | context) for one seed's ``state``: p_θ samples
    refined by :func:`langevin`."""
    k_init, k_run = jax.random.split(key)
    x0 = flow.apply({"params": state.flow_params}, k_init, num, context, method="sample")
    variables = {"params": state.ebm_params, "spectral": state.ebm_stats}
    return langevin(ebm, variables, k_run, jax.lax.stop_gradient(x0), context, num_steps, step_size)


def sample_q_seeds(
    flow: nn.Module,
    ebm: nn.Module,
    state: TrainState,
    key: Array,
    num: int,
    context: Optional[Array] = None,
    num_steps: int = LANGEVIN_STEPS,
    step_size: float = LANGEVIN_STEP_SIZE,
) -> Array:
    """:func:`sample_q` for every seed of a stacked ``state``: ``(num_seeds, num, d)``, jitted."""
    num_seeds = jax.tree.leaves(state.flow_params)[0].shape[0]
    keys = jax.random.split(key, num_seeds)

    def one(s, k):
        return sample_q(flow, ebm, s, k, num, context, num_steps, step_size)

    return tuned_jit(jax.vmap(one))(state, keys)
