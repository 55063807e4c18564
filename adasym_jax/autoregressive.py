"""Masked autoregressive spline flow: the structure of zuko's NSF, the paper's p_θ (C.1).

Each of the L layers transforms *every* coordinate by its own rational-quadratic spline whose
parameters come from a MADE conditioner (Germain et al., 2015): the spline of the coordinate at
position r of the layer's order sees only the coordinates at positions < r (and the context).
Orders alternate between layers (identity, reversed, identity, ...), as zuko's ``NSF`` does.
In 2-D a layer applies two scalar splines, one unconditional and one conditioned on the other
coordinate, where a coupling layer (:class:`~adasym_jax.flow.SplineFlow`) applies one.

Directions, as in :mod:`adasym_jax.flow`: the density direction x -> z is one conditioner pass
per layer (all coordinates at once, :func:`rqs_forward`); sampling z -> x inverts a layer
coordinate by coordinate: ``dim`` conditioner passes per layer. Sampling therefore costs
``dim`` times a density evaluation (``benchmarks/ar_sampling.py`` measures it).
"""

from __future__ import annotations

from typing import Optional, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from adasym_jax.flow import BaseSplineFlow
from adasym_jax.spline import num_spline_params, rqs_forward, rqs_inverse

Array = jax.Array

# Up to this many coordinates the sequential inversion is unrolled; above, a fori_loop.
_UNROLL_DIM = 8


def layer_orders(dim: int, num_transforms: int) -> np.ndarray:
    """Orders ``(L, dim)``: row i lists the coordinates of layer i in autoregressive order
    (identity for even i, reversed for odd i)."""
    base = np.arange(dim)
    return np.stack([base if i % 2 == 0 else base[::-1] for i in range(num_transforms)])


def made_masks(dim: int, context_dim: int, hidden: Sequence[int], order: np.ndarray, num_params: int) -> list[np.ndarray]:
    """0/1 masks of a MADE whose output for coordinate ``i`` depends on input ``j`` only if
    ``rank[j] < rank[i]`` (``rank`` = position in ``order``), and on every context input.

    Inputs are ``[x (dim), context (context_dim)]``; outputs are ``dim`` groups of
    ``num_params`` (coordinate-major). Hidden unit k of every layer has degree
    ``d_k ∈ {lo, ..., dim − 2}`` (cycled), with ``lo = −1`` (units that see the context only)
    when there is a context or ``dim == 1``; input j feeds unit k if ``rank[j] <= d_k``, units
    feed deeper units of equal or higher degree, and output i reads units with ``d_k < rank[i]``.
    Returns one mask per weight matrix, ``(fan_in, fan_out)``.
    """
    rank = np.empty(dim, np.int64)
    rank[np.asarray(order)] = np.arange(dim)
    in_deg = np.concatenate([rank, np.full(context_dim, -1)])  # context: degree -1, feeds every unit
    lo = -1 if (context_dim > 0 or dim == 1) else 0
    span = max(dim - 1 - lo, 1)
    masks, prev = [], in_deg
    for width in hidden:
        deg = lo + np.arange(width) % span
        masks.append((prev[:, None] <= deg[None, :]).astype(np.float32))
        prev = deg
    out_deg = np.repeat(rank, num_params)
    if hidden:
        masks.append((prev[:, None] < out_deg[None, :]).astype(np.float32))
    else:  # a linear MADE: input j (or the context) feeds output i if rank[j] < rank[i]
        masks.append((in_deg[:, None] < out_deg[None, :]).astype(np.float32))
    return masks


class _MaskedLayer(nn.Module):
    """One autoregressive spline layer; a step of the ``nn.scan`` over layers.

    Carry ``(x, log_det)``; scanned input: this layer's MADE masks and, when inverting, its
    order. The parameters are plain arrays (kernels multiplied by their masks), so the
    sequential inversion can loop over them.
    """

    dim: int
    num_bins: int
    hidden: Sequence[int]
    bound: float
    inverse: bool

    @nn.compact
    def __call__(self, carry, layer_input: tuple[tuple[Array, ...], Optional[Array]], context: Optional[Array]):
        x, log_det = carry
        masks, order = layer_input
        p = num_spline_params(self.num_bins)
        kernels, biases = [], []
        for i, mask in enumerate(masks):
            fan_in, fan_out = mask.shape
            last = i == len(masks) - 1
            init = nn.initializers.zeros if last else nn.initializers.lecun_normal()
            kernels.append(self.param(f"kernel_{i}", init, (fan_in, fan_out)) * mask)
            biases.append(self.param(f"bias_{i}", nn.initializers.zeros, (fan_out,)))

        def conditioner(h: Array) -> Array:
            with jax.named_scope("made_conditioner"):  # names its ops in profiles (benchmarks/speed.py)
                if context is not None:
                    h = jnp.concatenate([h, context], axis=-1)
                for w, b in zip(kernels[:-1], biases[:-1]):
                    h = nn.relu(h @ w + b)
                out = h @ kernels[-1] + biases[-1]
                return out.reshape(h.shape[:-1] + (self.dim, p))

        if not self.inverse:
            z, ld = rqs_forward(x, conditioner(x), self.bound)
            return (z, log_det + jnp.sum(ld, axis=-1)), None

        # Invert coordinate by coordinate, in the layer's order: pass t inverts the coordinate
        # j = order[t] alone, from the spline parameters the conditioner reads off the
        # coordinates already inverted (position t's outputs see positions < t only; the others
        # are still zero and meet zero kernel entries). One spline per coordinate, not `dim`.
        def one_pass(t, state):
            out, ld = state
            j = order[t]
            params = jax.lax.dynamic_index_in_dim(conditioner(out), j, axis=-2, keepdims=False)
            x_j, ld_j = rqs_inverse(jax.lax.dynamic_index_in_dim(x, j, axis=-1, keepdims=False), params, self.bound)
            out = jax.lax.dynamic_update_index_in_dim(out, x_j, j, axis=-1)
            return out, jax.lax.dynamic_update_index_in_dim(ld, ld_j, j, axis=-1)

        state = (jnp.zeros_like(x), jnp.zeros_like(x))
        if self.dim <= _UNROLL_DIM:
            for t in range(self.dim):
                state = one_pass(t, state)
        else:
            state = jax.lax.fori_loop(0, self.dim, one_pass, state)
        out, ld = state
        return (out, log_det + jnp.sum(ld, axis=-1)), None


class AutoregressiveSplineFlow(BaseSplineFlow):
    """Masked autoregressive neural spline flow (zuko's NSF structure), optional context.

    Attributes as :class:`~adasym_jax.flow.BaseSplineFlow`: ``dim``, ``num_transforms`` L,
    ``num_bins`` K, ``hidden`` (the MADE's hidden widths, ReLU as in zuko), ``bound`` B,
    ``context_dim``. Every layer applies ``dim`` scalar splines; orders alternate between
    layers. The MADE's last layer starts at zero, so a fresh flow is the identity on N(0, I).
    Methods (``log_prob``, ``sample``, ``sample_and_log_prob``, ``push_base``) take and return
    the same shapes as :class:`~adasym_jax.flow.SplineFlow`.
    """

    @nn.compact
    def __call__(self, x: Array, context: Optional[Array] = None, inverse: bool = False):
        """Push ``x (n, dim)`` through all layers; returns ``(out (n, dim), log_det (n,))``.

        ``inverse=False``: data -> base, ``log_det = log|det d z / d x|``.
        ``inverse=True``: base -> data, ``log_det = log|det d x / d z|``.
        """
        self._check_sizes()
        ctx = self._prepare_context(context, x.shape[0])
        p = num_spline_params(self.num_bins)
        orders = layer_orders(self.dim, self.num_transforms)
        per_layer = [made_masks(self.dim, self.context_dim, tuple(self.hidden), order, p) for order in orders]
        stacked = tuple(jnp.asarray(np.stack(ms)) for ms in zip(*per_layer))
        # The orders ride along only when inverting: an unused scanned input slowed the density
        # direction at dim 100 from 33 to 54 ms per 1000 points (benchmarks/ar_sampling.py).
        scanned_orders = jnp.asarray(orders, jnp.int32) if inverse else None
        args = (self.dim, self.num_bins, tuple(self.hidden), self.bound, inverse)
        return self._scan_layers(_MaskedLayer, args, "layers", x, (stacked, scanned_orders), ctx, inverse)
