"""The peer flow for the speed benchmark: our architecture built from distrax parts.

Same structure as :class:`adasym_jax.SplineFlow` (L masked couplings with alternating masks,
a conditioner MLP with SiLU hidden layers of the same widths and a zero-initialized last
layer, K-bin rational-quadratic splines on [-B, B] that are the identity outside, a
standard-normal base) but assembled from ``distrax.MaskedCoupling``,
``distrax.RationalQuadraticSpline``, ``distrax.Chain`` and ``distrax.Transformed``.

Direction: as in ours, the density direction x -> z applies coupling 0 first with the
spline's cheap forward map, and sampling runs the splines' inverse (the quadratic solve).
distrax's ``Transformed.log_prob`` runs the bijector's *inverse*, so the chain is wrapped in
``distrax.Inverse``. distrax's spline takes ``3K + 1`` parameters per coordinate (it also
emits two boundary slopes, ignored under ``boundary_slopes="identity"``).
"""

from __future__ import annotations

from typing import Sequence

import distrax
import flax.linen as nn
import jax
import jax.numpy as jnp

from adasym_jax.flow import coupling_masks

Array = jax.Array


class _MLP(nn.Module):
    out: int
    hidden: Sequence[int]

    @nn.compact
    def __call__(self, h: Array) -> Array:
        for width in self.hidden:
            h = nn.silu(nn.Dense(width)(h))
        return nn.Dense(self.out, kernel_init=nn.initializers.zeros, bias_init=nn.initializers.zeros)(h)


class DistraxSplineFlow(nn.Module):
    """distrax-built spline flow. ``log_prob(x (n, dim)) -> (n,)``;
    ``sample_and_log_prob(key, num) -> ((num, dim), (num,))``."""

    dim: int
    num_transforms: int = 5
    num_bins: int = 8
    hidden: Sequence[int] = (64, 64)
    bound: float = 5.0
    min_size: float = 1e-3

    def setup(self):
        p = 3 * self.num_bins + 1
        self.conditioners = [_MLP(self.dim * p, tuple(self.hidden)) for _ in range(self.num_transforms)]

    def _flow(self) -> distrax.Transformed:
        p = 3 * self.num_bins + 1
        # ours: 1 marks the coordinates a layer transforms; distrax: True marks the ones kept.
        masks = coupling_masks(self.dim, self.num_transforms) == 0
        layers = []
        for mlp, mask in zip(self.conditioners, masks):

            def conditioner(h, mlp=mlp):
                return mlp(h).reshape(h.shape[:-1] + (self.dim, p))

            def spline(params):
                return distrax.RationalQuadraticSpline(
                    params,
                    range_min=-self.bound,
                    range_max=self.bound,
                    boundary_slopes="identity",
                    min_bin_size=self.min_size,
                    min_knot_slope=self.min_size,
                )

            layers.append(distrax.MaskedCoupling(mask=jnp.asarray(mask), conditioner=conditioner, bijector=spline))
        # Chain applies its last element first in the forward direction: coupling 0 first on x -> z.
        x_to_z = distrax.Chain(layers[::-1])
        base = distrax.MultivariateNormalDiag(jnp.zeros(self.dim), jnp.ones(self.dim))
        return distrax.Transformed(base, distrax.Inverse(x_to_z))

    def __call__(self, x: Array) -> Array:
        return self.log_prob(x)

    def log_prob(self, x: Array) -> Array:
        return self._flow().log_prob(x)

    def sample_and_log_prob(self, key: Array, num: int):
        return self._flow().sample_and_log_prob(seed=key, sample_shape=(num,))
