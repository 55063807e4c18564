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


def c2st_mlp_batch(references, models, seeds, folds: int = 5, max_iter: int = 10000, epochs_per_call: int = 10) -> np.ndarray:
    """:func:`c2st_mlp` for many pairs at once, trained in JAX: ``references (P, n, d)``,
    ``models (P, m, d)``, ``seeds (P,)`` -> ``(P,)`` accuracies.

    The same test as :func:`c2st_mlp` (sklearn's ``KFold`` splits by the same seeds; the same
    z-scoring, network, initialization ranges, L2 penalty α = 1e-4, Adam (LR 1e-3, β (0.9,
    0.999), ε 1e-8), minibatches of 200 reshuffled every epoch, and stopping rule: training
    loss not below its best by 1e-4 for more than 10 epochs, or ``max_iter`` epochs), with
    every fold of every pair one member of a vmapped program, so that scoring 55 pairs costs
    seconds instead of sklearn's quarter hour. Random streams differ from sklearn's, so single
    scores differ by classifier noise (the tests compare the two). Needs equal fold sizes
    (``n + m`` divisible by ``folds``); otherwise use :func:`c2st_mlp`."""
    import jax
    import jax.numpy as jnp
    from sklearn.model_selection import KFold

    ref, mod = np.asarray(references, np.float64), np.asarray(models, np.float64)
    if ref.ndim != 3 or mod.ndim != 3 or ref.shape[0] != mod.shape[0] or ref.shape[2] != mod.shape[2]:
        raise ValueError(f"c2st_mlp_batch needs (P, n, d) and (P, m, d), got {ref.shape} and {mod.shape}")
    seeds = [int(s) for s in np.broadcast_to(np.asarray(seeds), (ref.shape[0],))]
    pairs = [_stack(r, m_) for r, m_ in zip(ref, mod)]
    total = pairs[0][0].shape[0]
    if total % folds:
        raise ValueError(f"c2st_mlp_batch needs n + m divisible by folds={folds}, got {total}")
    xs, ys, xt, yt = [], [], [], []
    for (x, y), r, seed in zip(pairs, ref, seeds):
        x = (x - r.mean(axis=0)) / np.maximum(r.std(axis=0, ddof=1), 1e-12)
        for tr, te in KFold(folds, shuffle=True, random_state=seed).split(x):
            xs.append(x[tr]), ys.append(y[tr]), xt.append(x[te]), yt.append(y[te])
    xs, ys, xt, yt = (jnp.asarray(np.stack(a), jnp.float32) for a in (xs, ys, xt, yt))
    members, n_train, dim = xs.shape
    batch = min(200, n_train)
    width = 10 * dim
    sizes = [(dim, width), (width, width), (width, 1)]
    alpha, lr, b1, b2, eps, tol, patience = 1e-4, 1e-3, 0.9, 0.999, 1e-8, 1e-4, 10
    # batches as sklearn's gen_batches: full ones, then the remainder
    starts = list(range(0, n_train, batch))
    lengths = [min(batch, n_train - s) for s in starts]

    def init(key):
        params = []
        for k, (fi, fo) in zip(jax.random.split(key, len(sizes)), sizes):
            bound = np.sqrt(6.0 / (fi + fo))  # sklearn's Glorot-uniform range for ReLU networks
            kw, kb = jax.random.split(k)
            params.append((jax.random.uniform(kw, (fi, fo), minval=-bound, maxval=bound), jax.random.uniform(kb, (fo,), minval=-bound, maxval=bound)))
        return params

    def logits(params, x):
        for w, b in params[:-1]:
            x = jax.nn.relu(x @ w + b)
        w, b = params[-1]
        return (x @ w + b)[:, 0]

    def loss_fn(params, x, y, mask):
        z = logits(params, x)
        n = jnp.sum(mask)
        nll = -jnp.sum(mask * (y * jax.nn.log_sigmoid(z) + (1 - y) * jax.nn.log_sigmoid(-z))) / n
        return nll + 0.5 * alpha * sum(jnp.sum(w**2) for w, _ in params) / n

    def epoch(carry, x, y):
        params, m, v, t, key, best, count, done, iters = carry
        key, kp = jax.random.split(key)
        perm = jax.random.permutation(kp, n_train)
        pad = starts[-1] + batch - n_train
        idx = jnp.concatenate([perm, jnp.zeros(pad, perm.dtype)]).reshape(len(starts), batch)
        mask = (jnp.arange(len(starts) * batch) < n_train).astype(jnp.float32).reshape(len(starts), batch)

        def one(c, inp):
            params, m, v, t, acc = c
            i, mk = inp
            lval, g = jax.value_and_grad(loss_fn)(params, x[i], y[i], mk)
            t = t + 1
            m = jax.tree.map(lambda a, b_: b1 * a + (1 - b1) * b_, m, g)
            v = jax.tree.map(lambda a, b_: b2 * a + (1 - b2) * b_**2, v, g)
            step = lr * jnp.sqrt(1 - b2**t) / (1 - b1**t)
            params = jax.tree.map(lambda p, a, b_: p - step * a / (jnp.sqrt(b_) + eps), params, m, v)
            return (params, m, v, t, acc + lval * jnp.sum(mk)), None

        (p2, m2, v2, t2, acc), _ = jax.lax.scan(one, (params, m, v, t, 0.0), (idx, mask))
        loss = acc / n_train
        count2 = jnp.where(loss > best - tol, count + 1, 0)
        best2 = jnp.minimum(loss, best)
        done2 = (count2 > patience) | (iters + 1 >= max_iter)
        keep = lambda new, old: jax.tree.map(lambda a, b_: jnp.where(done, b_, a), new, old)  # noqa: E731
        return (keep(p2, params), keep(m2, m), keep(v2, v), jnp.where(done, t, t2), key, jnp.where(done, best, best2),
                jnp.where(done, count, count2), done | done2, jnp.where(done, iters, iters + 1))

    @jax.jit
    def run(carry, x, y):
        def body(c, _):
            return epoch(c, x, y), None

        return jax.lax.scan(body, carry, None, length=epochs_per_call)[0]

    def start(key):
        params = init(key)
        zeros = jax.tree.map(jnp.zeros_like, params)
        return (params, zeros, zeros, 0.0, key, jnp.inf, 0, False, 0)

    keys = jnp.stack([jax.random.fold_in(jax.random.PRNGKey(seeds[p // folds]), p % folds) for p in range(members)])
    carry = jax.vmap(start)(keys)
    vrun = jax.jit(jax.vmap(run))
    while not bool(np.all(np.asarray(carry[7]))):
        carry = vrun(carry, xs, ys)
    acc = jax.vmap(lambda p, x, y: jnp.mean((logits(p, x) > 0) == (y > 0.5)))(carry[0], xt, yt)
    return np.asarray(acc, np.float64).reshape(-1, folds).mean(axis=1)
