"""Energy-based proxy q_ψ ∝ exp(f_ψ / T): residual MLP of Algorithms 4–6 (Appendix C.1).

``ResidualEBM.__call__`` returns ``log q̃_ψ(x) = f_ψ(x) / T``, the log of the unnormalized
density, shape ``(n,)``. With ``T = 1`` (the default) this is f_ψ itself.

Spectral normalization (Miyato et al., 2018) keeps a power-iteration vector ``u`` per layer
in the ``"spectral"`` collection. Pass ``update_stats=True`` and ``mutable=["spectral"]`` to
run one power iteration and store the new ``u`` (training); the default leaves ``u`` as is.
As in PyTorch's ``spectral_norm``, the gradient flows through σ with ``u`` and ``v`` held fixed.
"""

from __future__ import annotations

from typing import Optional

import flax.linen as nn
import jax
import jax.numpy as jnp

from adasym_jax.validation import check_context, check_points

Array = jax.Array


def _l2_normalize(v: Array, eps: float = 1e-12) -> Array:
    return v / (jnp.linalg.norm(v) + eps)


class SpectralDense(nn.Module):
    """Dense layer whose kernel is divided by an estimate of its largest singular value."""

    features: int
    n_power_iterations: int = 1

    @nn.compact
    def __call__(self, x: Array, update_stats: bool = False) -> Array:
        in_features = x.shape[-1]
        kernel = self.param("kernel", nn.initializers.lecun_normal(), (in_features, self.features))
        bias = self.param("bias", nn.initializers.zeros, (self.features,))
        u_var = self.variable(
            "spectral",
            "u",
            lambda: _l2_normalize(jax.random.normal(jax.random.PRNGKey(0), (self.features,))),
        )
        w = kernel.T  # (out, in), as in the usual definition of σ(W)
        u = jax.lax.stop_gradient(u_var.value)
        v = jnp.zeros((in_features,), kernel.dtype)
        w_sg = jax.lax.stop_gradient(w)
        for _ in range(self.n_power_iterations):
            v = _l2_normalize(w_sg.T @ u)
            u = _l2_normalize(w_sg @ v)
        sigma = u @ w @ v
        if update_stats and not self.is_initializing():
            u_var.value = u
        return x @ (kernel / sigma) + bias


class LayerNorm(nn.Module):
    """Layer normalization over the last axis, as ``flax.linen.LayerNorm`` (same parameters
    ``scale``/``bias``, ε = 1e-6, variance as E[h²] − E[h]² clipped at 0).

    The two row means are matmuls with a constant ``(features, 1)`` vector instead of
    reductions: on XLA's CPU backend the reductions (and their transposes in the backward
    pass) are the slow part of LayerNorm, while a thin matmul runs on the GEMM path.
    """

    epsilon: float = 1e-6

    @nn.compact
    def __call__(self, h: Array) -> Array:
        features = h.shape[-1]
        scale = self.param("scale", nn.initializers.ones, (features,))
        bias = self.param("bias", nn.initializers.zeros, (features,))
        avg = jnp.full((features, 1), 1.0 / features, h.dtype)
        mean = h @ avg
        var = jnp.maximum((h * h) @ avg - mean**2, 0.0)
        return (h - mean) * jax.lax.rsqrt(var + self.epsilon) * scale + bias


class _ResidualBlock(nn.Module):
    """Algorithm 5 (LayerNorm, SiLU, SN-Linear twice; x' = α x + x'; SiLU), FiLM-modulated
    by the context when one is given (Algorithm 6: x' ← γ(c) ⊙ x' + β(c))."""

    hidden: int
    film_layers: int

    @nn.compact
    def __call__(self, x: Array, context: Optional[Array], update_stats: bool) -> Array:
        h = x
        for _ in range(2):
            h = LayerNorm()(h)
            h = nn.silu(h)
            h = SpectralDense(self.hidden)(h, update_stats)
        if context is not None:
            h = _film_mlp(context, self.hidden, self.film_layers, "gamma", one=True) * h + _film_mlp(
                context, self.hidden, self.film_layers, "beta", one=False
            )
        alpha = self.param("alpha", nn.initializers.ones, ())
        return nn.silu(alpha * x + h)


def _film_mlp(c: Array, hidden: int, layers: int, name: str, one: bool) -> Array:
    # Called inside _ResidualBlock's compact scope; names keep γ and β apart.
    h = c
    for i in range(layers - 1):
        h = nn.silu(nn.Dense(hidden, name=f"{name}_{i}")(h))
    out = nn.Dense(hidden, name=f"{name}_out", kernel_init=nn.initializers.zeros)(h)
    # γ starts at 1 and β at 0 so a fresh FiLM block equals the unconditional block.
    return out + 1.0 if one else out


class ResidualEBM(nn.Module):
    """Residual MLP energy f_ψ (Algorithm 4), optionally FiLM-conditioned (Algorithm 6).

    Attributes:
      hidden: width h of every hidden layer.
      num_blocks: number of residual blocks.
      context_dim: size of the conditioning vector; 0 for an unconditional EBM.
      film_layers: depth of the MLPs producing γ(c) and β(c).
      temperature: T of Appendix B.8; the module returns f_ψ / T.
      base_scale: σ of an optional decaying base term (not in the paper): f_ψ(x) becomes
        MLP(x) − ‖x‖² / (2σ²). The MLP grows at most linearly (spectral norm), so exp f_ψ is
        then integrable and ζ finite; ``None`` (default) is the paper's EBM.

    ``__call__(x (n, d), context (n, k) | (1, k) | None) -> (n,)`` log q̃_ψ(x).
    """

    hidden: int = 64
    num_blocks: int = 6
    context_dim: int = 0
    film_layers: int = 2
    temperature: float = 1.0
    base_scale: Optional[float] = None

    @nn.compact
    def __call__(self, x: Array, context: Optional[Array] = None, update_stats: bool = False) -> Array:
        if self.temperature <= 0:
            raise ValueError(f"temperature must be > 0, got {self.temperature}")
        check_points(x, None, "x")
        check_context(context, self.context_dim, x.shape[0])
        if context is not None:
            context = jnp.asarray(context)
            if context.ndim == 1:
                context = context[None, :]
            context = jnp.broadcast_to(context, (x.shape[0], context.shape[-1]))
        h = nn.silu(SpectralDense(self.hidden)(x, update_stats))
        for _ in range(self.num_blocks):
            h = _ResidualBlock(self.hidden, self.film_layers)(h, context, update_stats)
        f = nn.Dense(1)(h)[..., 0]
        if self.base_scale is not None:
            f = f - jnp.sum(x * x, axis=-1) / (2.0 * self.base_scale**2)
        return f / self.temperature
