"""Unadjusted Langevin dynamics, eq. (8): the one sampler of q_ψ in the library."""

from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp

Array = jax.Array


def langevin(
    log_q: Callable[[Array], Array],
    x0: Array,
    key: Array,
    num_steps: int,
    step_size: float,
) -> Array:
    """Run x ← x + s ∇ log q(x) + √(2s) ξ, ξ ~ N(0, I), ``num_steps`` times from ``x0 (n, dim)``.

    ``log_q`` maps ``(n, dim) -> (n,)`` with independent rows (an unnormalized log-density is
    enough). Pure and jit/vmap-able (a ``lax.scan``; ``num_steps`` must be static).
    """
    grad = jax.grad(lambda x: jnp.sum(log_q(x)))
    scale = jnp.sqrt(2.0 * step_size)

    def body(x, k):
        return x + step_size * grad(x) + scale * jax.random.normal(k, x.shape, x.dtype), None

    x, _ = jax.lax.scan(body, x0, jax.random.split(key, num_steps))
    return x
