"""One batch of a pure step and the step's type: :class:`Batch`, :func:`as_batch`, ``StepFn``.

Below every step module (:mod:`adasym_jax.train`, :mod:`adasym_jax.wgan`,
:mod:`adasym_jax.zeta_sources`), so a step module never imports another to get them.
"""

from __future__ import annotations

from typing import Callable, NamedTuple, Optional

import jax

from adasym_jax.state import TrainState

Array = jax.Array
StepFn = Callable[[TrainState, "Batch"], tuple[TrainState, dict]]


class Batch(NamedTuple):
    """One batch: data ``x (n, dim)`` and, for conditional models, ``context (n, context_dim)``."""

    x: Array
    context: Optional[Array] = None


def as_batch(batch) -> Batch:
    """Accept a :class:`Batch`, an ``(x, context)`` tuple or a bare array ``x``."""
    if isinstance(batch, Batch):
        return batch
    if isinstance(batch, tuple):
        return Batch(*batch)
    return Batch(batch)
