"""Classifier two-sample tests (C2ST): accuracy of a classifier telling reference samples from
model samples; 0.5 means indistinguishable, 1.0 fully separable.

Two protocols:
  * :func:`c2st_paper` — D.4: HistGradientBoostingClassifier, the two samples (5000 + 5000 in
    the paper) split 70/30, accuracy on the 30 %.
  * :func:`c2st_mlp` — the SBI benchmark (Lueckmann et al., 2021): features z-scored with the
    reference sample's mean and std, MLPClassifier (ReLU, two hidden layers of 10·dim, Adam,
    max_iter 10000), mean accuracy of 5-fold (shuffled) cross-validation.

Both need scikit-learn (``pip install 'adasym_jax[sbi]'``). Classifiers run single-threaded:
on a shared CPU the thread pool of HistGradientBoosting is ~30× slower than one thread.
"""

from __future__ import annotations

import numpy as np


def _sklearn():
    try:
        import sklearn  # noqa: F401
        from threadpoolctl import threadpool_limits
    except ImportError:
        raise ImportError("C2ST needs scikit-learn: pip install 'adasym_jax[sbi]'") from None
    return threadpool_limits


def _stack(reference, model) -> tuple[np.ndarray, np.ndarray]:
    ref, mod = np.asarray(reference, np.float64), np.asarray(model, np.float64)
    if ref.ndim != 2 or mod.ndim != 2 or ref.shape[1] != mod.shape[1]:
        raise ValueError(f"C2ST needs two (n, d) samples of the same d, got {ref.shape} and {mod.shape}")
    if len(ref) < 10 or len(mod) < 10:
        raise ValueError("C2ST needs at least 10 samples on each side")
    if not (np.all(np.isfinite(ref)) and np.all(np.isfinite(mod))):
        raise ValueError("C2ST samples contain NaN or infinite values")
    x = np.concatenate([ref, mod])
    y = np.concatenate([np.ones(len(ref)), np.zeros(len(mod))])
    return x, y


def c2st_paper(reference, model, seed: int = 0, test_fraction: float = 0.3) -> float:
    """D.4's C2ST: HistGradientBoosting, 70/30 split, test accuracy. ``(n, d), (m, d) -> float``."""
    limits = _sklearn()
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.model_selection import train_test_split

    x, y = _stack(reference, model)
    x_tr, x_te, y_tr, y_te = train_test_split(x, y, test_size=test_fraction, random_state=seed, stratify=y)
    with limits(1):
        clf = HistGradientBoostingClassifier(random_state=seed).fit(x_tr, y_tr)
        return float(clf.score(x_te, y_te))


def c2st_mlp(reference, model, seed: int = 0, folds: int = 5) -> float:
    """The SBI benchmark's C2ST: z-score by the reference, MLP, ``folds``-fold CV accuracy."""
    limits = _sklearn()
    from sklearn.model_selection import KFold, cross_val_score
    from sklearn.neural_network import MLPClassifier

    x, y = _stack(reference, model)
    ref = np.asarray(reference, np.float64)
    x = (x - ref.mean(axis=0)) / np.maximum(ref.std(axis=0, ddof=1), 1e-12)
    width = 10 * x.shape[1]
    clf = MLPClassifier(activation="relu", hidden_layer_sizes=(width, width), max_iter=10000, solver="adam", random_state=seed)
    with limits(1):
        scores = cross_val_score(clf, x, y, cv=KFold(folds, shuffle=True, random_state=seed), scoring="accuracy")
    return float(np.mean(scores))
