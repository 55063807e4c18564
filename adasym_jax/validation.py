"""Input checks that run on the host, before anything is traced or compiled.

Checks of values (NaN, inf) only run on concrete arrays; under ``jit`` tracing they are
skipped (shapes are still checked), so library functions stay jit-compatible.
"""

from __future__ import annotations

from typing import Optional

import jax
import numpy as np


def _is_concrete(a) -> bool:
    return not isinstance(a, jax.core.Tracer)


def check_points(x, dim: Optional[int], name: str = "data", min_rows: int = 1) -> None:
    """Raise ``ValueError`` unless ``x`` is ``(n, dim)`` with ``n >= min_rows`` and finite values."""
    shape = getattr(x, "shape", None)
    if shape is None:
        raise ValueError(f"{name} must be an array of shape (n, dim), got {type(x).__name__}")
    if len(shape) != 2:
        raise ValueError(f"{name} must have shape (n, dim), got shape {tuple(shape)}")
    if shape[0] < min_rows:
        raise ValueError(f"{name} is empty or too small: {shape[0]} rows, need at least {min_rows}")
    if dim is not None and shape[1] != dim:
        raise ValueError(f"{name} has {shape[1]} columns, expected dim={dim}")
    if _is_concrete(x):
        arr = np.asarray(x)
        if not np.issubdtype(arr.dtype, np.floating):
            raise ValueError(f"{name} must be a float array, got dtype {arr.dtype}")
        if not np.all(np.isfinite(arr)):
            bad = int(np.size(arr) - np.count_nonzero(np.isfinite(arr)))
            raise ValueError(f"{name} contains {bad} NaN or infinite values")


def check_context(context, context_dim: int, n: int, name: str = "context") -> None:
    """Raise ``ValueError`` unless ``context`` matches a model with ``context_dim``.

    ``context`` may be ``None`` (only if ``context_dim == 0``), ``(context_dim,)``,
    ``(1, context_dim)`` (broadcast) or ``(n, context_dim)``.
    """
    if context_dim == 0:
        if context is not None:
            raise ValueError(f"model has context_dim=0 but a {name} was given")
        return
    if context is None:
        raise ValueError(f"model is conditional (context_dim={context_dim}); a {name} is required")
    shape = tuple(getattr(context, "shape", ()))
    if len(shape) == 1:
        shape = (1,) + shape
    if len(shape) != 2 or shape[1] != context_dim:
        raise ValueError(f"{name} must have shape (n, {context_dim}) or ({context_dim},), got {shape}")
    if shape[0] not in (1, n):
        raise ValueError(f"{name} has {shape[0]} rows; expected 1 or {n}")
    if _is_concrete(context) and not np.all(np.isfinite(np.asarray(context))):
        raise ValueError(f"{name} contains NaN or infinite values")
