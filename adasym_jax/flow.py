"""Neural spline flow p_θ: rational-quadratic spline couplings over a standard-normal base.

Direction convention: the *density* direction maps data ``x`` to base ``z`` through the
coupling layers 0, 1, ..., L-1 applying :func:`rqs_forward`; *sampling* runs the layers
backwards with :func:`rqs_inverse`. The L coupling layers are one ``nn.scan`` over stacked
parameters, traced unrolled by default (``unroll_layers``: faster steps; ``False`` keeps one loop
body, so that compile time stays flat as depth grows).
"""

from __future__ import annotations

import math
from typing import Optional, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from jax.scipy.linalg import solve_triangular

from adasym_jax.spline import num_spline_params, rqs_forward, rqs_inverse
from adasym_jax.validation import check_context, check_points

Array = jax.Array


def coupling_masks(dim: int, num_transforms: int, kind: str = "alternating", seed: int = 0) -> np.ndarray:
    """Masks ``(num_transforms, dim)`` of 0/1: 1 marks the coordinates a layer transforms.

    ``"alternating"`` transforms even then odd coordinates; ``"random"`` draws a balanced
    random half per layer from ``seed``. For ``dim == 1`` every layer transforms the single
    coordinate, conditioned on the context only (or on nothing: a learned 1-D spline).
    """
    if dim == 1:
        return np.ones((num_transforms, 1), np.float32)
    masks = np.zeros((num_transforms, dim), np.float32)
    rng = np.random.default_rng(seed)
    for i in range(num_transforms):
        if kind == "alternating":
            masks[i, (np.arange(dim) + i) % 2 == 0] = 1.0
        elif kind == "random":
            masks[i, rng.permutation(dim)[: (dim + 1) // 2]] = 1.0
        else:
            raise ValueError(f"unknown mask kind {kind!r}; use 'alternating' or 'random'")
    return masks


def coupling_selection(masks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """One-hot selectors of the transformed coordinates of each layer.

    Returns ``select (L, k, dim)`` whose row j picks the j-th transformed coordinate of layer
    i, and ``valid (L, k)``; k is the largest number of coordinates any layer transforms, and a
    layer that transforms fewer has all-zero (invalid) padding rows, so every layer of the
    ``nn.scan`` has the same shapes.
    """
    num_layers, dim = masks.shape
    k = int(masks.sum(axis=1).max())
    select = np.zeros((num_layers, k, dim), np.float32)
    for i in range(num_layers):
        idx = np.flatnonzero(masks[i])
        select[i, np.arange(idx.size), idx] = 1.0
    return select, select.sum(axis=-1)


class _Conditioner(nn.Module):
    """MLP from (masked x, context) to spline parameters ``(n, k, 3K-1)`` for the k
    coordinates the layer transforms (only those: the kept half needs no spline).

    The last layer starts at zero, so a fresh flow is the identity on top of N(0, I).
    """

    num_out: int
    num_bins: int
    hidden: Sequence[int]

    @nn.compact
    def __call__(self, h: Array) -> Array:
        for width in self.hidden:
            h = nn.silu(nn.Dense(width)(h))
        p = num_spline_params(self.num_bins)
        out = nn.Dense(self.num_out * p, kernel_init=nn.initializers.zeros, bias_init=nn.initializers.zeros)(h)
        return out.reshape(h.shape[:-1] + (self.num_out, p))


class _ResidualConditioner(nn.Module):
    """nflows' ``ResidualNet`` (sbi's NSF conditioner) from ``(masked x, context)`` to spline
    parameters ``(n, k, 3K-1)``: a dense layer of width ``hidden[0]`` on the concatenation, then
    ``len(hidden)`` pre-activation residual blocks (ReLU, two dense layers; the block's output
    gated by ``sigmoid(dense(context))`` when there is a context, nflows' GLU), then the output
    layer. The hidden and gate layers start as PyTorch's ``nn.Linear`` does (weights and biases
    uniform on ±1/sqrt(fan_in); Flax's LeCun-normal default has 3× the weight variance and zero
    biases, and trained sbi's problem measurably slower: ``benchmarks/results/sbi_npe.md``).
    The blocks' last layers start near zero (uniform ±1e-3) so each block starts as the
    identity; the output layer starts at zero, so a fresh flow is the identity (our convention;
    nflows draws it at random, which measured the same). The width and height logits are
    divided by ``sqrt(width)``, as nflows' coupling transform does.
    """

    num_out: int
    num_bins: int
    hidden: Sequence[int]
    context_dim: int

    @nn.compact
    def __call__(self, h: Array) -> Array:
        width = self.hidden[0]
        context = h[..., h.shape[-1] - self.context_dim :] if self.context_dim else None
        h = _torch_dense(width, h.shape[-1])(h)
        for _ in self.hidden:
            t = _torch_dense(width, width)(nn.relu(h))
            t = nn.Dense(width, kernel_init=_near_zero, bias_init=_near_zero)(nn.relu(t))
            if context is not None:
                t = t * nn.sigmoid(_torch_dense(width, self.context_dim)(context))
            h = h + t
        p = num_spline_params(self.num_bins)
        out = nn.Dense(self.num_out * p, kernel_init=nn.initializers.zeros, bias_init=nn.initializers.zeros)(h)
        out = out.reshape(h.shape[:-1] + (self.num_out, p))
        scale = np.ones(p, np.float32)
        scale[: 2 * self.num_bins] = 1.0 / math.sqrt(width)
        return out * scale


def _torch_dense(features: int, fan_in: int) -> nn.Dense:
    """A dense layer initialized as PyTorch's ``nn.Linear``: kernel and bias uniform on
    ``±1/sqrt(fan_in)``."""
    bound = 1.0 / math.sqrt(fan_in)
    return nn.Dense(
        features,
        kernel_init=nn.initializers.variance_scaling(1.0 / 3.0, "fan_in", "uniform"),
        bias_init=lambda key, shape, dtype=jnp.float32: jax.random.uniform(key, shape, dtype, -bound, bound),
    )


def _near_zero(key: Array, shape, dtype=jnp.float32) -> Array:
    """nflows' ``zero_initialization`` of a residual block's last layer: uniform on ±1e-3."""
    return jax.random.uniform(key, shape, dtype, -1e-3, 1e-3)


class _LULinear(nn.Module):
    """nflows' ``LULinear`` with identity initialization: ``z = x W^T + b`` with ``W = L U``,
    ``L`` unit lower triangular, ``U`` upper triangular with diagonal ``softplus(d) + 1e-3``
    (starts at 1). ``log|det W| = Σ log diag U``. ``inverse=True`` solves the two triangular
    systems. Rows ``(n, dim)`` in, ``((n, dim), log|det d out / d in|)`` out.
    """

    dim: int

    @nn.compact
    def __call__(self, x: Array, inverse: bool) -> tuple[Array, Array]:
        eps = 1e-3
        lower = self.param("lower", nn.initializers.zeros, (self.dim, self.dim))
        upper = self.param("upper", nn.initializers.zeros, (self.dim, self.dim))
        d0 = math.log(math.expm1(1.0 - eps))
        diag = jax.nn.softplus(self.param("diag", nn.initializers.constant(d0), (self.dim,))) + eps
        bias = self.param("bias", nn.initializers.zeros, (self.dim,))
        L = jnp.tril(lower, -1) + jnp.eye(self.dim, dtype=x.dtype)
        U = jnp.triu(upper, 1) + jnp.diag(diag)
        log_det = jnp.sum(jnp.log(diag))
        if inverse:
            y = solve_triangular(L, (x - bias).T, lower=True, unit_diagonal=True)
            return solve_triangular(U, y, lower=False).T, jnp.broadcast_to(-log_det, x.shape[:-1])
        return (x @ U.T) @ L.T + bias, jnp.broadcast_to(log_det, x.shape[:-1])


class _Coupling(nn.Module):
    """One coupling layer; a step of the ``nn.scan`` over layers. Carry: ``(x, log_det)``.

    Scanned inputs: ``mask (dim,)``, ``select (k, dim)`` and ``valid (k,)`` of
    :func:`coupling_selection`. The spline runs on the k selected coordinates only.
    """

    dim: int
    num_bins: int
    hidden: Sequence[int]
    bound: float
    inverse: bool
    residual: bool = False
    lu: bool = False

    @nn.compact
    def __call__(self, carry, layer: tuple[Array, Array, Array], context: Optional[Array]):
        x, log_det = carry
        lu = _LULinear(self.dim) if self.lu else None
        if lu is not None and self.inverse:  # sampling: undo the layer's linear map first
            x, ld = lu(x, inverse=True)
            log_det = log_det + ld
        mask, select, valid = layer
        cond_in = x * (1.0 - mask)
        if context is not None:
            cond_in = jnp.concatenate([cond_in, context], axis=-1)
        if self.residual:
            ctx_dim = 0 if context is None else context.shape[-1]
            params = _ResidualConditioner(select.shape[0], self.num_bins, tuple(self.hidden), ctx_dim)(cond_in)
        else:
            params = _Conditioner(select.shape[0], self.num_bins, tuple(self.hidden))(cond_in)
        x_t = _gather_columns(x, select)
        spline = rqs_inverse if self.inverse else rqs_forward
        y_t, ld = spline(x_t, params, self.bound)
        y = x * (1.0 - mask) + _scatter_columns(y_t, select)
        log_det = log_det + jnp.sum(valid * ld, axis=-1)
        if lu is not None and not self.inverse:
            y, ld = lu(y, inverse=False)
            log_det = log_det + ld
        return (y, log_det), None


def _gather_columns(x: Array, select: Array) -> Array:
    """``x (n, dim)``, one-hot ``select (k, dim)`` -> ``(n, k)`` (exact: one nonzero per row)."""
    if x.shape[-1] <= _SMALL_DIM:
        return jnp.sum(x[..., None, :] * select, axis=-1)
    return x @ select.T


def _scatter_columns(y_t: Array, select: Array) -> Array:
    """``y_t (n, k)`` -> ``(n, dim)``, zero outside the selected columns."""
    if select.shape[-1] <= _SMALL_DIM:
        return jnp.sum(y_t[..., :, None] * select, axis=-2)
    return y_t @ select


# Below this many coordinates, selection is elementwise (it fuses with the spline arithmetic);
# above, a matmul.
_SMALL_DIM = 8


class BaseSplineFlow(nn.Module):
    """What every spline flow shares: a standard-normal base, the context handling and the
    density / sampling methods. A subclass defines ``__call__(x, context, inverse)``.

    Attributes:
      dim: data dimension m (1 is allowed).
      num_transforms: number of layers L.
      num_bins: spline bins K per coordinate.
      hidden: widths of the conditioner MLP's hidden layers.
      bound: B; splines act on [-B, B] and are the identity outside (standardize data).
      context_dim: size of the conditioning vector; 0 for an unconditional flow.
      unroll_layers: trace the scan over layers unrolled (default). Same parameters and the same
        numbers up to float reduction order; the D.1 dual step (2-D, autoregressive, 5 layers) is
        1.11-1.20x faster on a 2-core CPU and compiles about a third slower
        (``benchmarks/results/scan_unroll.md``). ``False`` compiles one layer body however deep
        the flow.

    Methods take ``x: (n, dim)`` and ``context: (n, context_dim)`` or ``(1, context_dim)``
    (broadcast to all rows) and return per-row quantities of shape ``(n,)``.
    """

    dim: int
    num_transforms: int = 5
    num_bins: int = 8
    hidden: Sequence[int] = (64, 64)
    bound: float = 5.0
    context_dim: int = 0
    unroll_layers: bool = True

    def _check_sizes(self) -> None:
        if self.num_transforms < 1 or self.num_bins < 1 or self.dim < 1:
            raise ValueError("dim, num_transforms and num_bins must be >= 1")

    def _scan_layers(self, layer: type, args: tuple, name: str, x: Array, layer_inputs, context, inverse: bool):
        """Run ``num_transforms`` layers ``layer(*args)`` as one ``nn.scan`` over stacked
        parameters (backwards when ``inverse``) with per-layer ``layer_inputs``; called from a
        subclass's compact ``__call__``. Returns ``(out (n, dim), log_det (n,))``."""
        layers = nn.scan(
            layer,
            variable_axes={"params": 0},
            split_rngs={"params": True},
            in_axes=(0, nn.broadcast),
            length=self.num_transforms,
            reverse=inverse,
            unroll=self.num_transforms if self.unroll_layers else 1,
        )(*args, name=name)
        (out, log_det), _ = layers((x, jnp.zeros(x.shape[:-1], x.dtype)), layer_inputs, context)
        return out, log_det

    def _prepare_context(self, context: Optional[Array], n: int) -> Optional[Array]:
        if self.context_dim == 0:
            if context is not None:
                raise ValueError("this flow has context_dim=0 but a context was given")
            return None
        if context is None:
            raise ValueError(f"this flow is conditional (context_dim={self.context_dim}); pass a context")
        context = jnp.asarray(context)
        if context.ndim == 1:
            context = context[None, :]
        if context.shape[0] == 1 and n != 1:
            context = jnp.broadcast_to(context, (n, context.shape[1]))
        return context

    def base_log_prob(self, z: Array) -> Array:
        """log N(z; 0, I) per row: ``(n, dim) -> (n,)``."""
        return -0.5 * jnp.sum(z**2, axis=-1) - 0.5 * self.dim * math.log(2.0 * math.pi)

    def log_prob(self, x: Array, context: Optional[Array] = None) -> Array:
        """Exact log p_θ(x | context): ``x (n, dim) -> (n,)``."""
        check_points(x, self.dim, "x")
        check_context(context, self.context_dim, x.shape[0])
        z, log_det = self(x, context, inverse=False)
        return self.base_log_prob(z) + log_det

    def sample_and_log_prob(self, key: Array, num: int, context: Optional[Array] = None):
        """Draw ``num`` samples and their log-densities in one pass: ``((num, dim), (num,))``.

        Gradients flow along the sampling path (reparameterization); wrap the samples in
        ``jax.lax.stop_gradient`` for the paper's score-function estimator.
        """
        check_context(context, self.context_dim, num)
        return self.push_base(self.base_sample(key, num), context)

    def base_sample(self, key: Array, num: int) -> Array:
        """``num`` draws ``(num, dim)`` of the standard-normal base (what sampling pushes)."""
        return jax.random.normal(key, (num, self.dim))

    def push_base(self, z: Array, context: Optional[Array] = None):
        """Push base draws ``z (n, dim)`` through the flow: ``(x (n, dim), log p_θ(x) (n,))``.

        ``sample_and_log_prob(key, n)`` is ``push_base(base_sample(key, n))``; pushing several
        draws concatenated costs one pass instead of one per draw.
        """
        x, log_det = self(z, context, inverse=True)
        return x, self.base_log_prob(z) - log_det

    def sample(self, key: Array, num: int, context: Optional[Array] = None) -> Array:
        """``num`` samples ``(num, dim)`` of p_θ (of p_θ(· | context) when conditional)."""
        return self.sample_and_log_prob(key, num, context)[0]


class SplineFlow(BaseSplineFlow):
    """Neural spline flow of coupling layers, with optional context (a conditional flow p(x | c)).

    Each layer transforms the coordinates its mask marks (half of them) by one spline each,
    conditioned on the others: L layers apply about L·m/2 scalar splines. Attributes as
    :class:`BaseSplineFlow`, plus ``mask``: ``"alternating"`` or ``"random"`` coupling masks;
    ``residual``: nflows' residual conditioner instead of the MLP; ``lu``: an LU-factorized
    linear layer after each coupling (both on in :class:`NSFCouplingFlow`).
    """

    mask: str = "alternating"
    residual: bool = False
    lu: bool = False

    @nn.compact
    def __call__(self, x: Array, context: Optional[Array] = None, inverse: bool = False):
        """Push ``x (n, dim)`` through all layers; returns ``(out (n, dim), log_det (n,))``.

        ``inverse=False``: data -> base, ``log_det = log|det d z / d x|``.
        ``inverse=True``: base -> data, ``log_det = log|det d x / d z|``.
        """
        self._check_sizes()
        ctx = self._prepare_context(context, x.shape[0])
        masks = coupling_masks(self.dim, self.num_transforms, self.mask)
        select, valid = coupling_selection(masks)
        layer_inputs = (jnp.asarray(masks), jnp.asarray(select), jnp.asarray(valid))
        args = (self.dim, self.num_bins, tuple(self.hidden), self.bound, inverse, self.residual, self.lu)
        return self._scan_layers(_Coupling, args, "couplings", x, layer_inputs, ctx, inverse)


class NSFCouplingFlow(SplineFlow):
    """sbi's NSF (nflows, ``sbi.neural_nets.net_builders.build_nsf``) in our terms: alternating
    coupling layers whose conditioner is a residual net (width ``hidden[0]``, ``len(hidden)``
    blocks, ReLU, context-gated), each followed by an LU-factorized linear layer (identity at
    init). ``hidden=(50, 50)``, 5 transforms, 10 bins and bound 3 are sbi's defaults.
    Attributes and methods as :class:`SplineFlow`.
    """

    residual: bool = True
    lu: bool = True
