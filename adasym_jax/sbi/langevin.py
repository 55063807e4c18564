"""Sampling q_ψ(β | u) by Langevin dynamics (eq. (8)), started from p_θ samples (D.4).

  x_k = x_{k−1} + s ∇_x log q̃_ψ(x_{k−1} | u) + √(2s) z_{k−1},   z ~ N(0, I),

with the paper's 2000 steps of size s = 1e-4, as one ``lax.scan``. ``adasym sample --model q``
(:func:`adasym_jax.results.sample_run`) starts it from p_θ samples for every seed.
"""

from __future__ import annotations

from typing import Any, Optional

import flax.linen as nn
import jax

from adasym_jax.langevin import langevin as run_langevin

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
