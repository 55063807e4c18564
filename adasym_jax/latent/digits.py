"""scikit-learn's bundled 8×8 handwritten digits (1,797 images, no download) as image arrays.

Pixels are integers 0..16. Two scalings to [-1, 1] are used, and they agree on average:
``to_unit(pix)`` maps each value to the centre of its dequantization bin,
``(pix + 0.5) / 17 · 2 − 1``, and ``dequantize(pix, key)`` adds uniform noise inside the bin,
``(pix + u) / 17 · 2 − 1`` with ``u ~ U[0, 1)``. Densities over dequantized pixels bound the
discrete log-likelihood from below (Theis et al., 2016), which is how the pixel-space test
NLL is reported.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np

NUM_LEVELS = 17  # pixel values 0..16


class DigitsSplit(NamedTuple):
    """Raw integer pixels ``(n, 8, 8, 1)`` and labels ``(n,)`` for the train and test parts."""

    train_pixels: np.ndarray
    train_labels: np.ndarray
    test_pixels: np.ndarray
    test_labels: np.ndarray


def load_digits_split(test_fraction: float = 0.2, seed: int = 0) -> DigitsSplit:
    """The 1,797 digits split at random (fixed ``seed``) into train and test parts."""
    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"test_fraction must be in (0, 1), got {test_fraction}")
    try:
        from sklearn.datasets import load_digits
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise ImportError("the digits need scikit-learn: pip install 'adasym_jax[latent]'") from e
    bunch = load_digits()
    pixels = bunch.images.astype(np.int64)[..., None]  # (1797, 8, 8, 1)
    labels = bunch.target.astype(np.int64)
    order = np.random.default_rng(seed).permutation(len(labels))
    n_test = int(round(test_fraction * len(labels)))
    test, train = order[:n_test], order[n_test:]
    return DigitsSplit(pixels[train], labels[train], pixels[test], labels[test])


def to_unit(pixels: np.ndarray) -> np.ndarray:
    """Integer pixels 0..16 -> float32 in (-1, 1): the centre of each dequantization bin."""
    return ((np.asarray(pixels, np.float32) + 0.5) / NUM_LEVELS * 2.0 - 1.0).astype(np.float32)


def dequantize(pixels: np.ndarray, seed: int) -> np.ndarray:
    """Integer pixels -> ``(pix + u) / 17 · 2 − 1`` with fresh uniform noise ``u`` (float32)."""
    rng = np.random.default_rng(seed)
    u = rng.random(np.shape(pixels))
    return ((np.asarray(pixels, np.float64) + u) / NUM_LEVELS * 2.0 - 1.0).astype(np.float32)


def discrete_bits_per_dim(nll_unit: float, dim: int) -> float:
    """Bits per pixel of the 0..16 data bounded by the NLL (nats) of dequantized ``[-1, 1]`` data.

    The scaling x = (pix + u)·(2/17) − 1 has Jacobian (2/17)^dim, so
    NLL(pix + u) = NLL(x) − dim·log(2/17), and E_u[−log p(pix + u)] ≥ −log P(pix).
    """
    return (nll_unit - dim * math.log(2.0 / NUM_LEVELS)) / (dim * math.log(2.0))
