"""Monotone rational-quadratic splines (Durkan et al., 2019) as pure ``jnp`` functions.

A spline maps [-B, B] onto itself through K bins whose widths, heights and interior knot
derivatives come from one unconstrained parameter vector of size ``3K - 1``:

    params[..., :K]        -> bin widths   (softmax, each >= min_bin_width)
    params[..., K:2K]      -> bin heights  (softmax, each >= min_bin_height)
    params[..., 2K:]       -> K - 1 interior knot derivatives (softplus, >= min_derivative)

The two boundary derivatives are fixed to 1, so the spline joins the identity outside
[-B, B] with a continuous first derivative. All-zero parameters give the identity map.

Inputs outside [-B, B] are replaced by 0 *before* the spline arithmetic runs and the
identity result is selected afterwards, so values and gradients stay finite for any finite
input (a NaN produced in an unselected ``jnp.where`` branch would otherwise leak into the
gradient).

Every function is elementwise: ``x`` has shape ``(...)`` and ``params`` shape
``(..., 3K - 1)`` (broadcastable).
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

Array = jax.Array

DEFAULT_MIN_BIN_WIDTH = 1e-3
DEFAULT_MIN_BIN_HEIGHT = 1e-3
DEFAULT_MIN_DERIVATIVE = 1e-3


class SplineKnots(NamedTuple):
    """Knot positions and derivatives of a batch of splines.

    ``xs``/``ys``: ``(..., K + 1)`` knot coordinates from -B to B; ``ds``: ``(..., K + 1)``
    derivatives at the knots (the first and last are 1).
    """

    xs: Array
    ys: Array
    ds: Array


def num_spline_params(num_bins: int) -> int:
    """Size of the unconstrained parameter vector of one spline with ``num_bins`` bins."""
    return 3 * num_bins - 1


def _normalized_sizes(unnormalized: Array, min_size: float, bound: float) -> Array:
    k = unnormalized.shape[-1]
    if min_size * k >= 1.0:
        raise ValueError(f"min bin size {min_size} too large for {k} bins")
    sizes = min_size + (1.0 - min_size * k) * jax.nn.softmax(unnormalized, axis=-1)
    return 2.0 * bound * sizes


def _knot_positions(sizes: Array, bound: float) -> Array:
    cum = jnp.cumsum(sizes, axis=-1)
    # Pin the first and last knots exactly at -B and B (no round-off drift).
    inner = cum[..., :-1] - bound
    lo = jnp.full(sizes.shape[:-1] + (1,), -bound, sizes.dtype)
    hi = jnp.full(sizes.shape[:-1] + (1,), bound, sizes.dtype)
    return jnp.concatenate([lo, inner, hi], axis=-1)


def _interior_derivatives(unnormalized: Array, min_derivative: float) -> Array:
    # softplus(0 + offset) + min_derivative == 1, so zero parameters give slope 1.
    offset = jnp.log(jnp.expm1(1.0 - min_derivative))
    return jax.nn.softplus(unnormalized + offset) + min_derivative


def spline_knots(
    params: Array,
    bound: float,
    min_bin_width: float = DEFAULT_MIN_BIN_WIDTH,
    min_bin_height: float = DEFAULT_MIN_BIN_HEIGHT,
    min_derivative: float = DEFAULT_MIN_DERIVATIVE,
) -> SplineKnots:
    """Turn unconstrained ``params (..., 3K-1)`` into knots ``SplineKnots`` of ``(..., K+1)``."""
    p = params.shape[-1]
    if (p + 1) % 3 != 0:
        raise ValueError(f"spline params last axis must be 3K-1, got {p}")
    k = (p + 1) // 3
    w = _normalized_sizes(params[..., :k], min_bin_width, bound)
    h = _normalized_sizes(params[..., k : 2 * k], min_bin_height, bound)
    d = _interior_derivatives(params[..., 2 * k :], min_derivative)
    ones = jnp.ones(d.shape[:-1] + (1,), d.dtype)
    return SplineKnots(
        xs=_knot_positions(w, bound),
        ys=_knot_positions(h, bound),
        ds=jnp.concatenate([ones, d, ones], axis=-1),
    )


def _clip01(v: Array) -> Array:
    # Clip round-off excursions out of [0, 1] without touching the gradient (jnp.clip would
    # halve it at exactly 0 or 1, i.e. at knots and at ±B).
    return v + jax.lax.stop_gradient(jnp.clip(v, 0.0, 1.0) - v)


def _gather(a: Array, idx: Array) -> Array:
    return jnp.take_along_axis(a, idx[..., None], axis=-1)[..., 0]


def _bin_index(knots: Array, v: Array) -> Array:
    # Number of interior knots <= v; in [0, K-1] for v in [-B, B].
    return jnp.sum(v[..., None] >= knots[..., 1:-1], axis=-1)


def _bin_quantities(knots: SplineKnots, idx: Array):
    x0 = _gather(knots.xs, idx)
    x1 = _gather(knots.xs, idx + 1)
    y0 = _gather(knots.ys, idx)
    y1 = _gather(knots.ys, idx + 1)
    d0 = _gather(knots.ds, idx)
    d1 = _gather(knots.ds, idx + 1)
    return x0, x1 - x0, y0, y1 - y0, d0, d1


def rqs_forward(
    x: Array,
    params: Array,
    bound: float,
    min_bin_width: float = DEFAULT_MIN_BIN_WIDTH,
    min_bin_height: float = DEFAULT_MIN_BIN_HEIGHT,
    min_derivative: float = DEFAULT_MIN_DERIVATIVE,
) -> tuple[Array, Array]:
    """Apply the spline elementwise.

    Args:
      x: ``(...)`` inputs, any finite value.
      params: ``(..., 3K-1)`` unconstrained spline parameters (broadcast against ``x``).
      bound: B; the spline acts on [-B, B] and is the identity outside.

    Returns:
      ``(y, log_det)``, both ``(...)``: the outputs and ``log |dy/dx|`` elementwise.
    """
    knots = spline_knots(params, bound, min_bin_width, min_bin_height, min_derivative)
    x = jnp.asarray(x, knots.xs.dtype)
    inside = (x >= -bound) & (x <= bound)
    xs = jnp.where(inside, x, 0.0)
    idx = _bin_index(knots.xs, xs)
    x0, w, y0, h, d0, d1 = _bin_quantities(knots, idx)
    s = h / w
    xi = _clip01((xs - x0) / w)
    xi1m = xi * (1.0 - xi)
    denom = s + (d0 + d1 - 2.0 * s) * xi1m
    y = y0 + h * (s * xi**2 + d0 * xi1m) / denom
    dnum = s**2 * (d1 * xi**2 + 2.0 * s * xi1m + d0 * (1.0 - xi) ** 2)
    log_det = jnp.log(dnum) - 2.0 * jnp.log(denom)
    return jnp.where(inside, y, x), jnp.where(inside, log_det, 0.0)


def rqs_inverse(
    y: Array,
    params: Array,
    bound: float,
    min_bin_width: float = DEFAULT_MIN_BIN_WIDTH,
    min_bin_height: float = DEFAULT_MIN_BIN_HEIGHT,
    min_derivative: float = DEFAULT_MIN_DERIVATIVE,
) -> tuple[Array, Array]:
    """Invert :func:`rqs_forward` elementwise.

    Returns ``(x, log_det)`` with ``log_det = log |dx/dy| = -log |dy/dx|``, both ``(...)``.
    The quadratic is solved in the cancellation-free form ``xi = 2c / (-b - sqrt(b^2 - 4ac))``.
    """
    knots = spline_knots(params, bound, min_bin_width, min_bin_height, min_derivative)
    y = jnp.asarray(y, knots.ys.dtype)
    inside = (y >= -bound) & (y <= bound)
    ys = jnp.where(inside, y, 0.0)
    idx = _bin_index(knots.ys, ys)
    x0, w, y0, h, d0, d1 = _bin_quantities(knots, idx)
    s = h / w
    dy = ys - y0
    t = d0 + d1 - 2.0 * s
    a = h * (s - d0) + dy * t
    b = h * d0 - dy * t
    c = -s * dy
    disc = jnp.maximum(b**2 - 4.0 * a * c, 0.0)
    xi = _clip01((2.0 * c) / (-b - jnp.sqrt(disc)))
    x = x0 + xi * w
    xi1m = xi * (1.0 - xi)
    denom = s + t * xi1m
    dnum = s**2 * (d1 * xi**2 + 2.0 * s * xi1m + d0 * (1.0 - xi) ** 2)
    log_det = 2.0 * jnp.log(denom) - jnp.log(dnum)
    return jnp.where(inside, x, y), jnp.where(inside, log_det, 0.0)
