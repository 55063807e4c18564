"""Fréchet distance between Gaussians fitted to features, and the *Fréchet digits distance*.

The Fréchet (2-Wasserstein) distance between N(μ₁, Σ₁) and N(μ₂, Σ₂) is
  ‖μ₁ − μ₂‖² + tr Σ₁ + tr Σ₂ − 2 tr (Σ₁^{1/2} Σ₂ Σ₁^{1/2})^{1/2}.
The paper (Section 5.3) computes it on Inception-v3 features (FID). Inception weights cannot
be fetched here, so the *Fréchet digits distance* computes it on the 64-unit penultimate layer
of a small MLP classifier trained in this module on the 8×8 digits. Its values are not FID
values and are not comparable with any published FID. A real FID is in :mod:`.inception`
(the FID Inception-v3 in Flax, weights converted from a local copy of pytorch-fid's file); it
is tested only with random weights of the right structure and has not been checked against
pytorch-fid's numbers, because the weights cannot be fetched here.
"""

from __future__ import annotations

from typing import NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

Array = jax.Array


def sqrtm_psd(a: np.ndarray) -> np.ndarray:
    """Symmetric square root of a symmetric positive semi-definite matrix (float64, by eigh;
    tiny negative eigenvalues from round-off are clipped to zero)."""
    a = np.asarray(a, np.float64)
    a = 0.5 * (a + a.T)
    w, v = np.linalg.eigh(a)
    return (v * np.sqrt(np.clip(w, 0.0, None))) @ v.T


def frechet_distance(mu1: np.ndarray, cov1: np.ndarray, mu2: np.ndarray, cov2: np.ndarray) -> float:
    """Fréchet distance between N(mu1, cov1) and N(mu2, cov2); ``mu (k,)``, ``cov (k, k)``.

    The cross term uses tr (Σ₁^{1/2} Σ₂ Σ₁^{1/2})^{1/2} = Σ √eig(Σ₁^{1/2} Σ₂ Σ₁^{1/2}), a
    symmetric PSD matrix, so no complex square roots appear (unlike sqrtm(Σ₁ Σ₂)).
    """
    mu1, mu2 = np.asarray(mu1, np.float64), np.asarray(mu2, np.float64)
    cov1, cov2 = np.asarray(cov1, np.float64), np.asarray(cov2, np.float64)
    if mu1.shape != mu2.shape or mu1.ndim != 1 or cov1.shape != cov2.shape or cov1.shape != mu1.shape * 2:
        raise ValueError(f"shapes do not match: mu {mu1.shape}/{mu2.shape}, cov {cov1.shape}/{cov2.shape}")
    s1 = sqrtm_psd(cov1)
    cross = s1 @ cov2 @ s1
    eig = np.clip(np.linalg.eigvalsh(0.5 * (cross + cross.T)), 0.0, None)
    d = np.sum((mu1 - mu2) ** 2) + np.trace(cov1) + np.trace(cov2) - 2.0 * np.sum(np.sqrt(eig))
    return float(max(d, 0.0))


def feature_stats(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean ``(k,)`` and covariance ``(k, k)`` (unbiased) of ``features (n, k)``, n ≥ 2."""
    f = np.asarray(features, np.float64)
    if f.ndim != 2 or f.shape[0] < 2:
        raise ValueError(f"features must be (n >= 2, k), got {f.shape}")
    if not np.all(np.isfinite(f)):
        raise ValueError("features contain NaN or infinite values")
    return f.mean(0), np.cov(f, rowvar=False).reshape(f.shape[1], f.shape[1])


def frechet_from_features(a: np.ndarray, b: np.ndarray) -> float:
    """Fréchet distance between Gaussians fitted to two feature sets ``(n, k)`` and ``(m, k)``."""
    return frechet_distance(*feature_stats(a), *feature_stats(b))


class _DigitsMLP(nn.Module):
    """Flatten -> 128 ReLU -> 64 ReLU (the features) -> 10 logits."""

    feature_dim: int = 64

    @nn.compact
    def __call__(self, x: Array, features: bool = False) -> Array:
        h = x.reshape(x.shape[0], -1)
        h = nn.relu(nn.Dense(128)(h))
        h = nn.relu(nn.Dense(self.feature_dim)(h))
        if features:
            return h
        return nn.Dense(10)(h)


class DigitsFeatureNet(NamedTuple):
    """A trained digits classifier whose penultimate layer gives the features.

    ``test_accuracy`` is measured on the held-out images given to :func:`train_digits_classifier`.
    """

    model: _DigitsMLP
    params: dict
    test_accuracy: float

    def features(self, images: np.ndarray, clip: bool = True) -> np.ndarray:
        """Features ``(n, 64)`` of images ``(n, 8, 8, 1)`` in [-1, 1] (clipped there if ``clip``)."""
        x = np.asarray(images, np.float32)
        if x.ndim != 4 or x.shape[1:] != (8, 8, 1):
            raise ValueError(f"digits images must have shape (n, 8, 8, 1), got {x.shape}")
        if clip:
            x = np.clip(x, -1.0, 1.0)
        return np.asarray(_apply_features(self.model, self.params, jnp.asarray(x)))

    def predict(self, images: np.ndarray) -> np.ndarray:
        """Predicted labels ``(n,)``."""
        logits = self.model.apply({"params": self.params}, jnp.asarray(images, jnp.float32))
        return np.asarray(jnp.argmax(logits, -1))


def _apply_features(model, params, x):
    return jax.jit(lambda p, x: model.apply({"params": p}, x, features=True))(params, x)


def train_digits_classifier(
    images: np.ndarray,
    labels: np.ndarray,
    test_images: np.ndarray,
    test_labels: np.ndarray,
    *,
    steps: int = 1500,
    batch_size: int = 128,
    lr: float = 1e-3,
    seed: int = 0,
) -> DigitsFeatureNet:
    """Train the feature network by cross-entropy (Adam, weight decay 1e-4) on ``images
    (n, 8, 8, 1)`` in [-1, 1] with integer ``labels (n,)``; report held-out accuracy."""
    x = jnp.asarray(images, jnp.float32)
    y = jnp.asarray(labels, jnp.int32)
    if x.ndim != 4 or x.shape[1:] != (8, 8, 1) or y.shape != (x.shape[0],):
        raise ValueError(f"need images (n, 8, 8, 1) and labels (n,), got {x.shape} and {y.shape}")
    model = _DigitsMLP()
    key = jax.random.PRNGKey(seed)
    k_init, k_run = jax.random.split(key)
    params = model.init(k_init, x[:1])["params"]
    tx = optax.adamw(lr, weight_decay=1e-4)
    opt = tx.init(params)
    n = x.shape[0]
    bs = min(batch_size, n)

    def body(carry, k):
        p, o = carry
        idx = jax.random.choice(k, n, (bs,), replace=False)

        def loss(p_):
            logits = model.apply({"params": p_}, x[idx])
            return optax.softmax_cross_entropy_with_integer_labels(logits, y[idx]).mean()

        g = jax.grad(loss)(p)
        upd, o = tx.update(g, o, p)
        return (optax.apply_updates(p, upd), o), None

    (params, _), _ = jax.jit(lambda c, ks: jax.lax.scan(body, c, ks))((params, opt), jax.random.split(k_run, steps))
    net = DigitsFeatureNet(model, params, 0.0)
    acc = float(np.mean(net.predict(test_images) == np.asarray(test_labels)))
    return net._replace(test_accuracy=acc)


class FrechetDigits:
    """The Fréchet digits distance to fixed reference images: ``self(images) -> float``."""

    def __init__(self, net: DigitsFeatureNet, reference_images: np.ndarray):
        self.net = net
        self.mu, self.cov = feature_stats(net.features(reference_images))

    def __call__(self, images: np.ndarray) -> float:
        return frechet_distance(*feature_stats(self.net.features(images)), self.mu, self.cov)
