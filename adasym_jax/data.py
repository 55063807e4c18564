"""The 2D data sets of Appendix D.1–D.2, with exact log-densities where they exist.

Every set is drawn with NumPy from a fixed data seed, so a name and a seed define the data.
``load_dataset(name)`` returns ``(train, test)`` float32 arrays of shape ``(n, 2)`` with the
paper's split sizes (800/10k for ``gmm40``, 1000/10k for the others).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Callable, Optional

import numpy as np

Sampler = Callable[[np.random.Generator, int], np.ndarray]


@dataclasses.dataclass(frozen=True)
class GaussianMixture:
    """Equal-weight isotropic Gaussian mixture: ``means (K, d)``, common ``std``."""

    means: np.ndarray
    std: float

    def sample(self, rng: np.random.Generator, n: int) -> np.ndarray:
        comp = rng.integers(0, len(self.means), size=n)
        return self.means[comp] + self.std * rng.standard_normal((n, self.means.shape[1]))

    def log_prob(self, x: np.ndarray) -> np.ndarray:
        """Exact log-density ``(n, d) -> (n,)`` (float64)."""
        x = np.asarray(x, np.float64)
        d = x.shape[1]
        sq = np.sum((x[:, None, :] - self.means[None]) ** 2, axis=-1)
        log_comp = -0.5 * sq / self.std**2 - d * math.log(self.std) - 0.5 * d * math.log(2 * math.pi)
        m = log_comp.max(axis=1, keepdims=True)
        return (m + np.log(np.mean(np.exp(log_comp - m), axis=1, keepdims=True)))[:, 0]


def gmm40(data_seed: int = 0) -> GaussianMixture:
    """D.1: 40 components with centers U[0, 1]² (drawn from ``data_seed``), std 0.05."""
    centers = np.random.default_rng(10_000 + data_seed).uniform(0.0, 1.0, size=(40, 2))
    return GaussianMixture(centers, 0.05)


def _standardized(centers: np.ndarray, std: float) -> GaussianMixture:
    # "scaled to zero mean and unit variance": the mixture's total variance per axis is
    # var(centers) + std², and both centers and component std are scaled by it.
    centers = centers - centers.mean(axis=0)
    scale = np.sqrt(np.mean(centers**2) + std**2)
    return GaussianMixture(centers / scale, std / scale)


def gmm_grid() -> GaussianMixture:
    """D.2: 5×5 grid of centers in [-1, 1]², std 0.05, then scaled to zero mean, unit variance."""
    g = np.linspace(-1.0, 1.0, 5)
    centers = np.stack(np.meshgrid(g, g), axis=-1).reshape(-1, 2)
    return _standardized(centers, 0.05)


def gmm_ring() -> GaussianMixture:
    """D.2: 8 centers equidistant on the unit circle, std 0.05, scaled to unit variance."""
    t = 2 * np.pi * np.arange(8) / 8
    return _standardized(np.stack([np.cos(t), np.sin(t)], axis=1), 0.05)


def sample_rings(rng: np.random.Generator, n: int) -> np.ndarray:
    """D.2 concentric rings: unit directions scaled by 0.2 or 0.6 (p = 1/2), plus U(0, 0.1) noise."""
    d = rng.standard_normal((n, 2))
    d /= np.linalg.norm(d, axis=1, keepdims=True)
    r = np.where(rng.random(n) < 0.5, 0.2, 0.6)
    return d * r[:, None] + rng.uniform(0.0, 0.1, size=(n, 2))


def sample_spiral(rng: np.random.Generator, n: int) -> np.ndarray:
    """D.2 spiral: t ~ U(0, 10), (t cos t, t sin t) + N(0, 0.02²) (spans about ±10: standardize)."""
    t = rng.uniform(0.0, 10.0, size=n)
    return np.stack([t * np.cos(t), t * np.sin(t)], axis=1) + 0.02 * rng.standard_normal((n, 2))


MOONS_NOISE = 0.05


def sample_moons(rng: np.random.Generator, n: int, noise: float = MOONS_NOISE) -> np.ndarray:
    """Two interleaving half circles as scikit-learn's ``make_moons`` builds them (evenly spaced
    angles, shuffled, Gaussian noise ``noise``); scikit-learn is not needed."""
    n_out = n // 2
    n_in = n - n_out
    t_out = np.linspace(0.0, np.pi, n_out)
    t_in = np.linspace(0.0, np.pi, n_in)
    outer = np.stack([np.cos(t_out), np.sin(t_out)], axis=1)
    inner = np.stack([1.0 - np.cos(t_in), 1.0 - np.sin(t_in) - 0.5], axis=1)
    x = np.concatenate([outer, inner])[rng.permutation(n)]
    return x + noise * rng.standard_normal(x.shape)


def _mixture_sampler(make: Callable[[], GaussianMixture]) -> Sampler:
    return lambda rng, n: make().sample(rng, n)


@dataclasses.dataclass(frozen=True)
class DatasetSpec:
    sampler: Sampler
    n_train: int
    n_test: int
    log_prob: Optional[Callable[[np.ndarray], np.ndarray]] = None


DATASETS: dict[str, DatasetSpec] = {
    "gmm40": DatasetSpec(_mixture_sampler(gmm40), 800, 10_000, gmm40().log_prob),
    "gmm_grid": DatasetSpec(_mixture_sampler(gmm_grid), 1000, 10_000, gmm_grid().log_prob),
    "gmm_ring": DatasetSpec(_mixture_sampler(gmm_ring), 1000, 10_000, gmm_ring().log_prob),
    "rings": DatasetSpec(sample_rings, 1000, 10_000),
    "spiral": DatasetSpec(sample_spiral, 1000, 10_000),
    "moons": DatasetSpec(sample_moons, 1000, 10_000),
}


def dataset_spec(name: str) -> DatasetSpec:
    """The registry entry for ``name``; unknown names raise ``ValueError`` listing the choices."""
    if name not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}; choose one of {', '.join(sorted(DATASETS))}")
    return DATASETS[name]


def load_dataset(
    name: str, n_train: Optional[int] = None, n_test: Optional[int] = None, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """``(train (n_train, 2), test (n_test, 2))`` float32 for a built-in set.

    Defaults are the paper's sizes; ``seed`` is the data seed (independent of training seeds).
    Train and test are independent draws.
    """
    spec = dataset_spec(name)
    n_train = spec.n_train if n_train is None else n_train
    n_test = spec.n_test if n_test is None else n_test
    if n_train < 2 or n_test < 1:
        raise ValueError(f"need n_train >= 2 and n_test >= 1, got {n_train}, {n_test}")
    rng_train = np.random.default_rng([seed, 0])
    rng_test = np.random.default_rng([seed, 1])
    return (
        spec.sampler(rng_train, n_train).astype(np.float32),
        spec.sampler(rng_test, n_test).astype(np.float32),
    )
