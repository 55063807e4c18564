"""Many seeds, many steps: vmapped initialization, ``lax.scan`` chunks, evaluation, ``fit``.

The host only sees the run at chunk boundaries (evaluation points): each chunk is one
compiled call that runs ``eval_every`` steps for every seed at once.
"""

from __future__ import annotations

import dataclasses
import threading
import time
import warnings
from typing import Any, Callable, Mapping, Optional, Sequence, Union

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from adasym_jax import minibatch as mb
from adasym_jax import objective as obj
from adasym_jax.checkpoint import Standardization
from adasym_jax.config import EVAL_SEED, TrainConfig
from adasym_jax.jit import compiler_options, tuned_jit  # noqa: F401 - runner.tuned_jit is kept importable
from adasym_jax.batch import Batch, StepFn
from adasym_jax.state import TrainState, build_models, init_state, uses_zeta_cache
from adasym_jax.train import make_train_step
from adasym_jax.zeta_sources import refresh_zeta_cache
from adasym_jax.validation import check_context, check_points

Array = jax.Array
Seeds = Union[int, Sequence[int]]


def seed_list(seeds: Seeds) -> list[int]:
    """``5`` -> ``[0, 1, 2, 3, 4]``; a sequence is taken as the exact seeds."""
    if isinstance(seeds, (int, np.integer)):
        if seeds < 1:
            raise ValueError(f"need at least one seed, got {seeds}")
        return list(range(int(seeds)))
    out = [int(s) for s in seeds]
    if not out:
        raise ValueError("empty seed list")
    if len(set(out)) != len(out):
        raise ValueError(f"duplicate seeds in {out}")
    return out


class NonFiniteError(FloatingPointError):
    """Training produced NaN/inf. ``last_good_state`` is the state before the failing chunk."""

    def __init__(self, message: str, last_good_state: TrainState, step: int, quantity: str):
        super().__init__(message)
        self.last_good_state = last_good_state
        self.step = step
        self.quantity = quantity


class FitInterrupted(KeyboardInterrupt):
    """Ctrl-C (``KeyboardInterrupt``) during :func:`fit`, with what was finished.

    ``last_good_state``: the state after the last chunk that finished (the state ``fit``
    started from if none did); ``step``: its step; ``result``: a :class:`FitResult` of the
    finished chunks (``None`` if none finished). Being a ``KeyboardInterrupt``, it stops a
    program that does not catch it, as Ctrl-C always does.
    """

    def __init__(self, message: str, last_good_state: TrainState, step: int, result: Optional["FitResult"]):
        super().__init__(message)
        self.last_good_state = last_good_state
        self.step = step
        self.result = result


class Trainer:
    """The models, the pure step and compiled multi-seed programs for one config and dim.

    Attributes: ``config``, ``dim``, ``flow`` (:class:`SplineFlow`), ``ebm``
    (:class:`ResidualEBM`), ``step`` (the pure single-seed step: ``step`` if given, else
    :func:`~adasym_jax.train.make_train_step` of ``config``; a custom step must keep the
    :class:`~adasym_jax.state.TrainState` structure). With D.3's cached ζ
    (``config.zeta_refresh_every`` K > 1, :func:`~adasym_jax.state.uses_zeta_cache`) the
    compiled chunks redraw ``state.zeta_cache`` before every step whose index is a multiple of K.
    """

    def __init__(self, config: TrainConfig, dim: int, step: Optional[StepFn] = None):
        if dim < 1:
            raise ValueError(f"dim must be >= 1, got {dim}")
        self.config = config
        self.dim = int(dim)
        self.flow, self.ebm = build_models(config, self.dim)
        self.step = make_train_step(config, self.flow, self.ebm) if step is None else step
        self._cache: dict[Any, Any] = {}

    # -- initialization -------------------------------------------------------------
    def init(self, seeds: Seeds, lambdas: Optional[dict] = None) -> TrainState:
        """States for all seeds, stacked on a leading axis; seed s uses ``PRNGKey(s)``.

        ``lambdas``: optional dict name -> ``(num_seeds,)`` initial multipliers (P-W grids).
        """
        keys = jnp.stack([jax.random.PRNGKey(s) for s in seed_list(seeds)])
        fn = lambda k, lam: init_state(self.config, self.flow, self.ebm, k, self.dim, lam)  # noqa: E731
        if lambdas is None:
            return tuned_jit(jax.vmap(lambda k: fn(k, None)))(keys)
        return tuned_jit(jax.vmap(fn))(keys, lambdas)

    # -- training -------------------------------------------------------------------
    def _chunk_fn(self, num_steps: int, n: int):
        bs = self.config.batch_size
        minibatch = bs is not None and bs < n
        every = self.config.zeta_refresh_every if uses_zeta_cache(self.config) else 0
        flow = self.flow

        def one_seed(state: TrainState, x: Array, ctx: Optional[Array], start: Array):
            def body(s, t):
                if minibatch:
                    # Epochs (adasym_jax.minibatch): s.key is the epoch's key, fixed through the
                    # epoch; the step (and a ζ-cache refresh) gets a key of its own and s.key
                    # moves on at the epoch's end, so every epoch visits every row once.
                    k_order, k_step, k_after = mb.minibatch_keys(s.key, s.step, n, bs)
                    s = s.replace(key=k_step)
                if every:
                    # t is the run's step index, unbatched under the seed vmap, so the cond stays
                    # a branch (a per-seed predicate would become a select that samples every step).
                    s = jax.lax.cond(t % every == 0, lambda s_: refresh_zeta_cache(flow, s_), lambda s_: s_, s)
                if not minibatch:
                    return self.step(s, Batch(x, ctx))
                idx = mb.batch_indices(k_order, s.step, n, bs)
                new, metrics = self.step(s, Batch(x[idx], None if ctx is None else ctx[idx]))
                return new.replace(key=k_after), metrics

            return jax.lax.scan(body, state, start + jnp.arange(num_steps))

        def all_seeds(states: TrainState, x: Array, ctx: Optional[Array]):
            start = jnp.reshape(states.step, (-1,))[0]  # the run's clock: the same for every seed
            return jax.vmap(one_seed, in_axes=(0, None, None, None))(states, x, ctx, start)

        return tuned_jit(all_seeds)

    def chunk(self, num_steps: int, n: int):
        """Compiled ``(state, x, context) -> (state, metrics)`` running ``num_steps`` steps for
        every seed; metrics are ``(num_seeds, num_steps)`` arrays."""
        key = ("chunk", num_steps, n)
        if key not in self._cache:
            self._cache[key] = self._chunk_fn(num_steps, n)
        return self._cache[key]

    def run(self, state: TrainState, x: Array, num_steps: int, context: Optional[Array] = None):
        """Run ``num_steps`` steps on data ``x (n, dim)`` for every seed in ``state``.

        Returns ``(state, metrics)`` with metrics of shape ``(num_seeds, num_steps)``.
        """
        x = _validated(x, self.dim, self.config.context_dim, context)
        return self.chunk(num_steps, x.shape[0])(state, x, context)

    # -- evaluation -----------------------------------------------------------------
    def _eval_fn(self, n: int):
        m = self.config.eval_zeta_samples
        flow, ebm = self.flow, self.ebm

        def one_seed(state: TrainState, x: Array, key: Array):
            log_p = flow.apply({"params": state.flow_params}, x, method="log_prob")
            y, log_p_y = flow.apply({"params": state.flow_params}, key, m, method="sample_and_log_prob")
            v = {"params": state.ebm_params, "spectral": state.ebm_stats}
            log_zeta = obj.log_zeta_estimate(ebm.apply(v, y), log_p_y)
            log_q = ebm.apply(v, x) - log_zeta
            return {"test_nll_p": -jnp.mean(log_p), "test_nll_q": -jnp.mean(log_q), "log_zeta": log_zeta}

        return tuned_jit(jax.vmap(one_seed, in_axes=(0, None, None)))

    def evaluate(self, state: TrainState, x: Array, key: Optional[Array] = None) -> dict[str, np.ndarray]:
        """Test NLL of p_θ (exact), of q̃_ψ = f/T − log ζ̂ (ζ̂ from ``eval_zeta_samples``
        flow samples) and log ζ̂, each ``(num_seeds,)``. Unconditional models only."""
        if self.config.context_dim:
            raise ValueError("evaluate() covers unconditional models; use log_prob with a context")
        x = _validated(x, self.dim, 0, None)
        key = jax.random.PRNGKey(EVAL_SEED) if key is None else key
        fn = self._cache.setdefault(("eval", x.shape[0]), self._eval_fn(x.shape[0]))
        return {k: np.asarray(v) for k, v in fn(state, x, key).items()}

    def log_prob(self, state: TrainState, x: Array, context: Optional[Array] = None) -> Array:
        """log p_θ(x) for every seed: ``(num_seeds, n)``."""
        x = _validated(x, self.dim, self.config.context_dim, context)
        if "log_prob" not in self._cache:
            f = lambda p, xx, c: self.flow.apply({"params": p}, xx, c, method="log_prob")  # noqa: E731
            self._cache["log_prob"] = tuned_jit(jax.vmap(f, in_axes=(0, None, None)))
        return self._cache["log_prob"](state.flow_params, x, context)

    def sample(self, state: TrainState, key: Array, num: int, context: Optional[Array] = None) -> Array:
        """``num`` samples of p_θ for every seed: ``(num_seeds, num, dim)``."""
        check_context(context, self.config.context_dim, num)
        num_seeds = jax.tree.leaves(state.flow_params)[0].shape[0]
        keys = jax.random.split(key, num_seeds)
        cache_key = ("sample", num)
        if cache_key not in self._cache:
            f = lambda p, k, c: self.flow.apply({"params": p}, k, num, c, method="sample")  # noqa: E731
            self._cache[cache_key] = tuned_jit(jax.vmap(f, in_axes=(0, 0, None)))
        return self._cache[cache_key](state.flow_params, keys, context)


def _validated(x, dim: int, context_dim: int, context) -> Array:
    check_points(x, dim, "data", min_rows=1)
    check_context(context, context_dim, x.shape[0])
    return jnp.asarray(x, jnp.float32)


def seed_sharding(num_seeds: int, devices: Optional[Sequence[Any]] = None) -> NamedSharding:
    """The sharding of a leading seed axis of ``num_seeds`` over ``devices`` (default: all,
    ``jax.devices()``, which spans every process of a ``jax.distributed`` run): a 1-axis
    ``"seed"`` mesh, ``PartitionSpec("seed")``. A count that is not a multiple of the number of
    devices is a one-line ``ValueError``."""
    devices = list(jax.devices() if devices is None else devices)
    if num_seeds % len(devices):
        raise ValueError(f"{num_seeds} seeds do not divide over {len(devices)} devices")
    return NamedSharding(Mesh(np.array(devices), ("seed",)), PartitionSpec("seed"))


def shard_seeds(state: TrainState, devices: Optional[Sequence[Any]] = None) -> TrainState:
    """Place the leading seed axis of ``state`` across ``devices`` (default: all).

    The number of seeds must be a multiple of the number of devices. Compiled chunks then
    run each device's seeds locally (data is replicated).
    """
    num_seeds = jax.tree.leaves(state)[0].shape[0]
    return jax.device_put(state, seed_sharding(num_seeds, devices))


@dataclasses.dataclass
class EarlyStopping:
    """Per-seed validation bookkeeping of a run to convergence, so that a resumed run goes on
    with it (``fit(early_stopping=...)``): ``active`` (bool ``(S,)``, still training),
    ``best_val``, ``best_step``, ``since`` (evaluations since the best), ``stopped_step``
    (``-1`` while active), ``best_state``, each seed's best-validation state, and
    ``diverged_step`` / ``diverged_quantity`` (``fit(on_nonfinite="freeze")``; ``-1`` / ``None``
    for seeds that did not diverge)."""

    active: np.ndarray
    best_val: np.ndarray
    best_step: np.ndarray
    since: np.ndarray
    stopped_step: np.ndarray
    best_state: TrainState
    diverged_step: Optional[np.ndarray] = None
    diverged_quantity: Optional[list] = None

    def to_dict(self) -> dict[str, list]:
        """The bookkeeping without ``best_state`` as JSON-ready lists (``inf`` -> ``None``)."""
        return {
            "active": [bool(v) for v in self.active],
            "best_val": [float(v) if np.isfinite(v) else None for v in self.best_val],
            "best_step": [int(v) for v in self.best_step],
            "since": [int(v) for v in self.since],
            "stopped_step": [int(v) for v in self.stopped_step],
            "diverged_step": None if self.diverged_step is None else [int(v) for v in self.diverged_step],
            "diverged_quantity": None if self.diverged_quantity is None else list(self.diverged_quantity),
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], best_state: TrainState) -> "EarlyStopping":
        return cls(
            active=np.asarray(d["active"], bool),
            best_val=np.asarray([np.inf if v is None else v for v in d["best_val"]], np.float64),
            best_step=np.asarray(d["best_step"], np.int64),
            since=np.asarray(d["since"], np.int64),
            stopped_step=np.asarray(d["stopped_step"], np.int64),
            best_state=best_state,
            diverged_step=None if d.get("diverged_step") is None else np.asarray(d["diverged_step"], np.int64),
            diverged_quantity=d.get("diverged_quantity"),
        )


@dataclasses.dataclass
class FitResult:
    """What :func:`fit` returns: final ``state`` (seeds stacked), ``history`` of per-step
    training metrics ``(num_seeds, steps)``, ``evals`` of test metrics ``(num_seeds, n_evals)``
    at ``eval_steps``, and timings (compile excluded from ``steps_per_second``).

    ``standardization``: the :class:`~adasym_jax.checkpoint.Standardization` the data were
    mapped through before training (``None`` for raw data; see ``fit(standardize=...)``). The
    model (``state``, ``trainer``) then works in standardized coordinates; ``evals``' test
    NLLs are in data units (``standardization.log_det`` added), while ``log_zeta`` and the
    per-step training ``history`` stay in the model's coordinates.

    Validation and early stopping (``fit(validation_fraction=..., patience=...)``; all
    ``None`` without a validation split): ``val_curve (S, E)``, the exact NLL of p_θ on the
    validation rows (data units) at each evaluation, NaN after the seed stopped;
    ``best_val (S,)`` its lowest value; ``best_step (S,)`` the step where it was reached. With
    early stopping (``patience`` given) also ``stopped_step (S,)`` and ``stopped_epoch (S,)``:
    where each seed stopped (its last good step for a seed that diverged, the last step run for
    a seed that reached the cap), and
    ``state`` holds each seed's best-validation parameters (see :func:`fit`).
    ``steps_per_epoch``: steps in one pass over the training rows (1 for full-batch runs).
    ``diverged_step (S,)``: the step where a seed's training went non-finite (``-1``: never;
    only ``fit(on_nonfinite="freeze")`` lets a run go on past one), ``diverged_quantity``
    the quantity that did (``None`` per finite seed). ``early_stopping``: the validation
    bookkeeping at that point (an :class:`EarlyStopping`; with ``patience`` only), which
    ``fit(early_stopping=...)`` continues."""

    trainer: Trainer
    state: TrainState
    seeds: list[int]
    history: dict[str, np.ndarray]
    eval_steps: list[int]
    evals: dict[str, np.ndarray]
    steps_per_second: float
    compile_seconds: float
    standardization: Optional[Standardization] = None
    val_curve: Optional[np.ndarray] = None
    best_val: Optional[np.ndarray] = None
    best_step: Optional[np.ndarray] = None
    stopped_step: Optional[np.ndarray] = None
    stopped_epoch: Optional[np.ndarray] = None
    steps_per_epoch: int = 1
    diverged_step: Optional[np.ndarray] = None
    diverged_quantity: Optional[list] = None
    early_stopping: Optional[EarlyStopping] = None

    @property
    def last_test_nll_p(self) -> np.ndarray:
        """Test NLL of p_θ at the last evaluation, per seed."""
        return self.evals["test_nll_p"][:, -1]

    @property
    def best_test_nll_p(self) -> np.ndarray:
        """Lowest test NLL of p_θ over the evaluations, per seed."""
        return np.nanmin(self.evals["test_nll_p"], axis=1)


STANDARDIZE_CHOICES = "'auto', True, False or a Standardization"
NLL_KEYS = ("test_nll_p", "test_nll_q")  # evaluation keys that are NLLs (shifted to data units)


def choose_standardization(standardize: Union[bool, str, Standardization], data, bound: float) -> Optional[Standardization]:
    """The :class:`~adasym_jax.checkpoint.Standardization` :func:`fit` applies to ``data``.

    ``True``: fitted to ``data``; ``False``: none; a ``Standardization``: that one (e.g. the
    ``result.standardization`` of the run being resumed); ``"auto"``: fitted when the data
    leave the splines' range, i.e. when some coordinate's ``|mean| + 3·std`` exceeds
    ``bound`` (said once in a :class:`UserWarning`), else none, with a warning if some points
    still lie outside ``[-bound, bound]`` (the flow is the identity there).
    """
    if isinstance(standardize, Standardization):
        if standardize.dim != data.shape[1]:
            raise ValueError(f"standardization has dim {standardize.dim}, the data have dim {data.shape[1]}")
        return standardize
    if isinstance(standardize, (bool, np.bool_)):
        return Standardization.fit(data) if standardize else None
    if not (isinstance(standardize, str) and standardize == "auto"):
        raise ValueError(f"standardize must be {STANDARDIZE_CHOICES}, got {standardize!r}")
    x = np.asarray(data, np.float64)
    extent = float(np.max(np.abs(x.mean(axis=0)) + 3.0 * x.std(axis=0)))
    if extent > bound:
        warnings.warn(
            f"fit: standardizing the data (|mean| + 3 std reaches {extent:.3g}, beyond the splines' range "
            f"[-{bound:g}, {bound:g}]); the model works in standardized coordinates, result.standardization maps "
            "back, test NLLs are in data units (pass standardize=False to train on raw data)",
            UserWarning,
            stacklevel=3,
        )
        return Standardization.fit(data)
    outside = float(np.mean(np.any(np.abs(x) > bound, axis=1)))
    if outside > 0:
        warnings.warn(
            f"fit: {outside:.2%} of the data points lie outside the splines' range [-{bound:g}, {bound:g}], where the "
            "flow is the identity; pass standardize=True or raise config.bound",
            UserWarning,
            stacklevel=3,
        )
    return None


#: Seed of the fixed permutation that :func:`validation_split` draws the validation rows with.
VALIDATION_SPLIT_SEED = 0


def steps_per_epoch(config: TrainConfig, n: int) -> int:
    """Steps in one pass over ``n`` training rows: ``n // config.batch_size`` in a minibatch
    run (``batch_size`` < ``n``, see :mod:`adasym_jax.minibatch`), 1 in a full-batch run."""
    bs = config.batch_size
    return mb.batches_per_epoch(n, bs) if bs is not None and bs < n else 1


def check_early_stopping(validation_fraction: float, patience: Optional[int]) -> None:
    """One-line ``ValueError`` for a bad ``validation_fraction`` (a number in ``[0, 1)``) or
    ``patience`` (``None`` or an int >= 1, which needs ``validation_fraction`` > 0)."""
    if isinstance(validation_fraction, (bool, np.bool_)) or not isinstance(validation_fraction, (int, float, np.integer, np.floating)):
        raise ValueError(f"validation_fraction must be a number in [0, 1), got {validation_fraction!r}")
    if not 0.0 <= float(validation_fraction) < 1.0:
        raise ValueError(f"validation_fraction must be in [0, 1), got {validation_fraction!r}")
    if patience is not None:
        if isinstance(patience, (bool, np.bool_)) or not isinstance(patience, (int, np.integer)) or patience < 1:
            raise ValueError(f"patience must be None or an integer >= 1, got {patience!r}")
        if float(validation_fraction) == 0.0:
            raise ValueError("patience needs a validation split: pass validation_fraction > 0 (e.g. 0.1)")


def validation_split(n: int, fraction: float, seed: int = VALIDATION_SPLIT_SEED) -> tuple[np.ndarray, np.ndarray]:
    """``(training rows, validation rows)``: sorted index arrays that split ``range(n)``, with
    ``round(fraction · n)`` validation rows drawn by a fixed permutation (``seed``), so the same
    data always split the same way (a resumed run validates on the same rows). ``fraction`` 0:
    all rows train, none validate. Too few rows for the split is a one-line ``ValueError``."""
    check_early_stopping(fraction, None)
    if float(fraction) == 0.0:
        return np.arange(n), np.arange(0)
    n_val = int(round(float(fraction) * n))
    if n_val < 1 or n - n_val < 2:
        raise ValueError(
            f"validation_fraction={float(fraction):g} of {n} rows leaves {n_val} validation and {n - n_val} "
            "training rows; need at least 1 and 2 (more data or another fraction)"
        )
    perm = np.random.default_rng(seed).permutation(n)
    return np.sort(perm[n_val:]), np.sort(perm[:n_val])


def _bcast(mask: Array, leaf: Array) -> Array:
    return jnp.reshape(mask, mask.shape + (1,) * (jnp.ndim(leaf) - 1))


@tuned_jit
def _select_seeds(mask: Array, new: TrainState, old: TrainState) -> TrainState:
    """Per seed: ``new`` where ``mask`` (bool ``(S,)``), else ``old`` (every leaf)."""
    return jax.tree.map(lambda a, b: jnp.where(_bcast(mask, a), a, b), new, old)


#: What :func:`fit` does when a seed's metrics or state turn NaN/inf (see :func:`fit`).
NONFINITE_POLICIES = ("raise", "freeze")

#: An evaluation callback of :func:`fit`: ``fn(state, standardization) -> {name: (S,) array}``.
Evaluator = Callable[[TrainState, Optional[Standardization]], Mapping[str, Any]]


def seeds_nonfinite(metrics: dict[str, np.ndarray], state: TrainState, step0: int) -> tuple[np.ndarray, list[Optional[str]]]:
    """Per seed, where a chunk that started after step ``step0`` first went non-finite:
    ``(steps (S,), quantities)`` with the step of the first NaN/inf training metric (the
    chunk's end if only the state is non-finite), ``-1`` and ``None`` for finite seeds."""
    num_seeds = int(np.asarray(state.step).reshape(-1).shape[0])
    at = np.full(num_seeds, -1, np.int64)
    names: list[Optional[str]] = [None] * num_seeds
    for name, arr in metrics.items():
        bad = ~np.isfinite(np.asarray(arr))
        for s in np.where(bad.any(axis=1))[0]:
            first = step0 + int(np.argmax(bad[s])) + 1
            if at[s] < 0 or first < at[s]:
                at[s], names[s] = first, name
    length = max((np.asarray(a).shape[1] for a in metrics.values()), default=0)
    for path, leaf in jax.tree_util.tree_leaves_with_path(state):
        ok = np.isfinite(np.asarray(leaf, np.float64).reshape(num_seeds, -1)).all(axis=1)
        for s in np.where(~ok & (at < 0))[0]:
            at[s], names[s] = step0 + length, jax.tree_util.keystr(path)
    return at, names


def raise_first_nonfinite(
    at: np.ndarray, names: list[Optional[str]], metrics: Mapping[str, np.ndarray], state: TrainState,
    last_good: TrainState, done: int, length: int,
) -> None:
    """Raise :class:`NonFiniteError` for the earliest entry of :func:`seeds_nonfinite`'s
    ``(at, names)`` (``-1`` entries are ignored): a training metric at its step (ties: the
    first metric), else the first state leaf, "in the state after step ``done + length``";
    it carries ``last_good``, the state at step ``done``."""
    if not np.any(at >= 0):
        return
    order = {k: i for i, k in enumerate(metrics)}
    leaves = [jax.tree_util.keystr(p) for p, _ in jax.tree_util.tree_leaves_with_path(state)]
    order.update({k: len(metrics) + i for i, k in enumerate(leaves)})
    s = min(np.where(at >= 0)[0], key=lambda i: (at[i], order[names[i]]))
    name = names[s]
    in_metrics = name in metrics
    where = f"at step {at[s]}" if in_metrics else f"in the state after step {done + length}"
    raise NonFiniteError(
        f"training diverged: {name} became NaN or infinite {where}; the last good state is from step {done}",
        last_good,
        int(at[s]) if in_metrics else -1,
        name,
    )


def _context_rows(context, n: int, context_dim: int) -> np.ndarray:
    """A (checked) context as ``(n, context_dim)`` rows: a single context is broadcast to all."""
    return np.broadcast_to(np.asarray(context, np.float32).reshape(-1, context_dim), (n, context_dim))


def fit(
    data: Array,
    *,
    config: TrainConfig = TrainConfig(),
    seeds: Seeds = 5,
    num_steps: int = 1000,
    eval_every: Optional[int] = None,
    test_data: Optional[Array] = None,
    state: Optional[TrainState] = None,
    progress: bool = True,
    trainer: Optional[Trainer] = None,
    on_eval: Optional[Callable[["FitResult"], None]] = None,
    standardize: Union[bool, str, Standardization] = "auto",
    validation_fraction: float = 0.0,
    patience: Optional[int] = None,
    context: Optional[Array] = None,
    test_context: Optional[Array] = None,
    evaluators: Sequence[Evaluator] = (),
    on_nonfinite: str = "raise",
    early_stopping: Optional[EarlyStopping] = None,
) -> FitResult:
    """Train ``config.method`` on ``data (n, dim)`` for every seed at once: the one training
    loop of the library (the CLI, the SBI and latent experiments and the benchmarks call it).

    Runs ``num_steps`` steps (the cap, ``max_steps``) in compiled chunks of ``eval_every``
    (a shorter last chunk if needed), evaluating after each chunk. ``state`` resumes a
    previous run. ``trainer`` (a :class:`Trainer`) may carry a custom pure step.

    Conditional models (``config.context_dim`` > 0): ``context (n, context_dim)`` goes with
    ``data`` row by row (e.g. simulations (β, u)); ``test_context`` with ``test_data``.

    Evaluation, after every chunk: for an unconditional model the test NLL of p_θ and q̃_ψ
    and log ζ̂ (:meth:`Trainer.evaluate`) on ``test_data`` (default: the training rows); for a
    conditional one the test NLL of p_θ when ``test_data`` is given. Each of ``evaluators``,
    ``fn(state, standardization) -> {name: (S,) array}``, adds its own per-seed quantities
    (e.g. C2ST, a Fréchet distance) to ``result.evals``; ``state`` is in the model's
    coordinates, ``standardization`` maps them back (``None`` for raw data).

    ``on_eval(result)``, if given, is called after each evaluation with a :class:`FitResult`
    of the chunks finished so far (e.g. to save a checkpoint or print a line).
    Ctrl-C (``KeyboardInterrupt``, also during compilation or inside ``on_eval``) becomes
    :class:`FitInterrupted`, carrying the state and the :class:`FitResult` of the last
    finished chunk.

    Non-finite values (``on_nonfinite``): a seed whose training metrics or state become
    NaN/inf in a chunk stops there, at its state from before the chunk (its last good state),
    and the quantity and step are recorded. ``"raise"`` (default) then ends the run with
    :class:`NonFiniteError` naming them and carrying the last good state; ``"freeze"``
    (studies of many members, e.g. a P-W grid) keeps it frozen and trains the others on,
    reporting ``result.diverged_step`` and ``result.diverged_quantity``; its later
    evaluations are NaN.

    ``standardize`` (see :func:`choose_standardization`): ``"auto"`` standardizes data that
    leave the splines' range ``[-config.bound, config.bound]`` and says so; ``True`` / ``False``
    force it; a :class:`~adasym_jax.checkpoint.Standardization` is used as given. When the
    data are standardized, data and test data are mapped through it (contexts are not), the
    result carries it as ``result.standardization`` and its test NLLs (and the progress bar's)
    are in data units.

    Training to convergence (as sbi's NPE: ``validation_fraction=0.1, patience=20``;
    flowjax's ``fit_to_data``: patience 5):

    - ``validation_fraction`` (in ``[0, 1)``): that share of the rows of ``data`` is held out
      by :func:`validation_split` (a fixed permutation) *before* the standardization
      statistics are fitted on the rest; the model never trains on them. After every chunk
      the validation loss, the exact NLL of p_θ on those rows (for every method, as NPE
      uses; data units), is recorded per seed in ``result.val_curve``. 0 (default): no split,
      exactly the fixed-length behaviour.
    - ``patience`` (``None`` or >= 1, needs ``validation_fraction`` > 0): a seed stops after
      ``patience`` evaluations in a row without a strictly lower validation loss than its best
      so far, and ``result.state`` holds, per seed, the state of its best evaluation
      (``result.best_val``, ``result.best_step``); training ends when every seed has stopped or
      at ``num_steps``. ``None`` (default): the fixed step count of the paper's runs.
    - ``early_stopping``: the :class:`EarlyStopping` of an interrupted run to convergence
      (``result.early_stopping`` of its last finished chunk, with ``state`` its training
      state): the resumed run goes on counting patience from it, stopped seeds stay stopped
      and each seed's best state is kept.
    - ``eval_every`` ``None`` (default): one epoch (:func:`steps_per_epoch`; patience then
      counts epochs, as in NPE; a full-batch epoch is one step) when ``patience`` is given,
      else 100 steps. A given ``eval_every`` is kept as is: patience counts evaluations.

    How stopped seeds stay put in one program: every chunk still runs all seeds (one
    compiled vmapped program, whatever the seeds' stopping times); afterwards a small
    compiled select keeps, leaf by leaf, ``where(active, new, old)``, so a stopped seed's
    parameters, optimizer states, multipliers and key no longer change (its wasted compute is
    what a mask inside the vmapped chunk would cost too, since ``vmap`` turns a branch on a
    per-seed flag into computing both sides; the select leaves the compiled chunk as it is).
    Only ``state.step``, the run's clock, advances for all seeds, so the returned state is at
    the run's last step for every seed. A stopped seed's training metrics in ``history`` and
    its later ``val_curve`` entries are NaN (it did not train); its non-finite values are
    not errors; ``evals`` keep evaluating its frozen state (an early-stopped seed) or are NaN
    (a diverged one). The best-state pytree is updated by the same select,
    ``where(improved, state, best)``. ``result.evals`` evaluate the training state; the
    returned best state's test metrics are those at ``result.best_step``.
    """
    check_points(data, None, "data", min_rows=2)
    if num_steps < 1 or (eval_every is not None and eval_every < 1):
        raise ValueError("num_steps and eval_every must be >= 1")
    if on_nonfinite not in NONFINITE_POLICIES:
        raise ValueError(f"unknown on_nonfinite {on_nonfinite!r}; choose one of {', '.join(NONFINITE_POLICIES)}")
    check_early_stopping(validation_fraction, patience)
    conditional = config.context_dim > 0
    dim = data.shape[1]
    check_context(context, config.context_dim, data.shape[0])
    if conditional:  # one context row per data row
        context = _context_rows(context, data.shape[0], config.context_dim)
    train_rows, val_rows = validation_split(data.shape[0], validation_fraction)
    val = val_ctx = None
    if val_rows.size:
        data, val = np.asarray(data)[train_rows], np.asarray(data)[val_rows]
        if conditional:
            context, val_ctx = np.asarray(context)[train_rows], np.asarray(context)[val_rows]
    if test_data is None and conditional:
        test = test_ctx = None
    else:
        test, test_ctx = (data, context) if test_data is None else (test_data, test_context)
        check_points(test, dim, "test data", min_rows=1)
        check_context(test_ctx, config.context_dim, test.shape[0])
        if conditional:
            test_ctx = _context_rows(test_ctx, test.shape[0], config.context_dim)
    standardizer = choose_standardization(standardize, data, config.bound)
    to_model = lambda a: None if a is None else np.asarray(a if standardizer is None else standardizer.apply(np.asarray(a, np.float32)), np.float32)  # noqa: E731
    data, test, val = to_model(data), to_model(test), to_model(val)
    as_ctx = lambda c: None if c is None else jnp.asarray(c, jnp.float32)  # noqa: E731
    context, test_ctx, val_ctx = as_ctx(context), as_ctx(test_ctx), as_ctx(val_ctx)
    x = jnp.asarray(data, jnp.float32)
    trainer = trainer or Trainer(config, dim)
    shift = 0.0 if standardizer is None else float(standardizer.log_det)
    per_epoch = steps_per_epoch(config, x.shape[0])
    early = patience is not None
    if eval_every is None:
        eval_every = per_epoch if early else 100

    def evaluate(s: TrainState) -> dict[str, np.ndarray]:  # test NLLs in data units
        ev: dict[str, np.ndarray] = {}
        if test is not None and not conditional:
            ev = {k: v + shift if k in NLL_KEYS else v for k, v in trainer.evaluate(s, test).items()}
        elif test is not None:
            ev = {"test_nll_p": -np.asarray(trainer.log_prob(s, test, test_ctx), np.float64).mean(axis=1) + shift}
        for fn in evaluators:
            for k, v in fn(s, standardizer).items():
                if k in ev:
                    raise ValueError(f"evaluator quantity {k!r} is already evaluated")
                ev[k] = np.asarray(v, np.float64).reshape(-1)
        return ev

    def val_nll(s: TrainState) -> np.ndarray:  # (S,), data units
        return -np.asarray(trainer.log_prob(s, val, val_ctx), np.float64).mean(axis=1) + shift

    seeds_ = seed_list(seeds)
    state = trainer.init(seeds_) if state is None else state
    start = int(np.asarray(state.step).reshape(-1)[0])
    num_seeds = len(seeds_)

    chunks = [eval_every] * (num_steps // eval_every) + ([num_steps % eval_every] if num_steps % eval_every else [])
    history: dict[str, list] = {}
    evals: dict[str, list] = {}
    eval_steps: list[int] = []
    val_curve: list[np.ndarray] = []
    timing = {"run": 0.0, "compile": 0.0}
    # Per-seed bookkeeping (host side): still training; validation best, its step, evaluations
    # since it; where a seed stopped early or diverged.
    active = np.ones(num_seeds, bool)
    best_val = np.full(num_seeds, np.inf)
    best_step = np.full(num_seeds, start, np.int64)
    since = np.zeros(num_seeds, np.int64)
    stopped_step = np.full(num_seeds, -1, np.int64)
    diverged_step = np.full(num_seeds, -1, np.int64)
    diverged_quantity: list[Optional[str]] = [None] * num_seeds
    best_state = state
    if early_stopping is not None:
        if not early:
            raise ValueError("early_stopping continues a run to convergence: pass patience too")
        if np.shape(early_stopping.active) != (num_seeds,):
            raise ValueError(f"early_stopping has {np.shape(early_stopping.active)[0]} seeds, the run {num_seeds}")
        active = np.asarray(early_stopping.active, bool).copy()
        best_val = np.asarray(early_stopping.best_val, np.float64).copy()
        best_step = np.asarray(early_stopping.best_step, np.int64).copy()
        since = np.asarray(early_stopping.since, np.int64).copy()
        stopped_step = np.asarray(early_stopping.stopped_step, np.int64).copy()
        best_state = early_stopping.best_state
        if early_stopping.diverged_step is not None:
            diverged_step = np.asarray(early_stopping.diverged_step, np.int64).copy()
            diverged_quantity = list(early_stopping.diverged_quantity or [None] * num_seeds)
        if not active.any():
            chunks = []  # every seed had stopped: nothing left to train
    def snapshot() -> dict[str, Any]:
        """Copies of the per-seed bookkeeping, taken with each committed chunk."""
        return {
            "diverged_step": diverged_step.copy(),
            "diverged_quantity": list(diverged_quantity),
            "best_val": best_val.copy(),
            "best_step": best_step.copy(),
            "early_stopping": bookkeeping(),
        }

    def result_of(n: int, final: Optional[TrainState] = None, stopped: Optional[np.ndarray] = None) -> FitResult:
        """The FitResult of the first ``n`` recorded chunks: the committed chunk's state and
        bookkeeping, or with ``final`` the returned (best) states and the bookkeeping now."""
        good, step = committed[0], committed[1]
        book = committed[3] if final is None else snapshot()
        out = FitResult(
            trainer=trainer,
            state=good if final is None else final,
            seeds=seeds_,
            history={k: np.concatenate(v[:n], axis=1) for k, v in history.items()},
            eval_steps=eval_steps[:n],
            evals={k: np.stack(v[:n], axis=1) for k, v in evals.items()},
            steps_per_second=(step - start) / max(timing["run"], 1e-9),
            compile_seconds=timing["compile"],
            standardization=standardizer,
            steps_per_epoch=per_epoch,
            diverged_step=book["diverged_step"],
            diverged_quantity=book["diverged_quantity"],
        )
        if val is not None:
            curve = np.stack(val_curve[:n], axis=1) if n else np.zeros((num_seeds, 0))
            out.val_curve = curve
            bv = book["best_val"]
            out.best_val = np.where(np.isfinite(bv), bv, np.nan) if n or early_stopping is not None else np.full(num_seeds, np.nan)
            out.best_step = book["best_step"]
        if early and stopped is not None:
            out.stopped_step = stopped.copy()
            out.stopped_epoch = stopped / per_epoch
        out.early_stopping = book["early_stopping"]
        return out

    def bookkeeping() -> Optional[EarlyStopping]:
        if not early:
            return None
        return EarlyStopping(
            active.copy(), best_val.copy(), best_step.copy(), since.copy(), stopped_step.copy(), best_state,
            diverged_step.copy(), list(diverged_quantity),
        )

    # (state, step, chunks recorded, bookkeeping): rebound in one assignment once a chunk is
    # fully recorded, so an interrupt anywhere sees a consistent last finished chunk.
    committed = (state, start, 0, snapshot())
    bar = None
    try:
        compiled = {}
        for length in sorted(set(chunks)):
            t0 = time.perf_counter()
            compiled[length] = _interruptible(lambda n=length: trainer.chunk(n, x.shape[0]).lower(state, x, context).compile())
            timing["compile"] += time.perf_counter() - t0

        bar = _progress(num_steps, progress, config.method)
        done = start
        for length in chunks:
            t0 = time.perf_counter()
            new_state, metrics = compiled[length](state, x, context)
            metrics = {k: np.asarray(v) for k, v in metrics.items()}
            timing["run"] += time.perf_counter() - t0
            at, names = seeds_nonfinite(metrics, new_state, done)
            at = np.where(active, at, -1)  # a stopped seed's values are not errors
            bad = at >= 0
            if on_nonfinite == "raise":
                raise_first_nonfinite(at, names, metrics, new_state, state, done, length)
            else:
                for s_ in np.where(bad)[0]:
                    diverged_step[s_], diverged_quantity[s_] = at[s_], names[s_]
                    if early:
                        stopped_step[s_] = done  # it stops at its last good state
            keep = active & ~bad
            if not keep.all():
                # stopped or diverged seeds keep their last state (the clock moves on); the
                # training metrics of seeds that were not training are NaN
                new_state = _select_seeds(jnp.asarray(keep), new_state, state).replace(step=new_state.step)
                metrics = {k: np.where(active[:, None], v.astype(np.result_type(v, np.float32)), np.nan) for k, v in metrics.items()}
            active = keep
            state, done = new_state, done + length
            gone = diverged_step >= 0
            ev = {k: np.where(gone, np.nan, v) for k, v in evaluate(state).items()}
            if val is not None:
                v = val_nll(state)
                improved = active & (v < best_val)  # NaN never improves
                if improved.any():
                    best_val = np.where(improved, v, best_val)
                    best_step = np.where(improved, done, best_step)
                    if early:
                        best_state = _select_seeds(jnp.asarray(improved), state, best_state)
                val_curve.append(np.where(active, v, np.nan))
                if early:
                    since = np.where(improved, 0, since + active)
                    newly = active & (since >= patience)
                    stopped_step = np.where(newly, done, stopped_step)
                    active = active & ~newly
            for k, v in metrics.items():
                history.setdefault(k, []).append(v)
            for k, v in ev.items():
                evals.setdefault(k, []).append(v)
            eval_steps.append(done)
            committed = (state, done, len(eval_steps), snapshot())
            if bar is not None:
                bar.update(length)
                bar.set_postfix(**_postfix(ev, val_curve[-1] if val is not None else None, active if early else None, gone))
            if on_eval is not None:
                on_eval(result_of(len(eval_steps)))
            if not active.any():
                break
    except FitInterrupted:
        raise
    except KeyboardInterrupt:
        good, step, n = committed[:3]
        raise FitInterrupted(
            f"interrupted; the last finished chunk ended at step {step}", good, step, result_of(n) if n else None
        ) from None
    finally:
        if bar is not None:
            bar.close()
    if not early:
        return result_of(len(eval_steps))
    stopped = np.where(stopped_step < 0, done, stopped_step)  # the cap stopped the others
    return result_of(len(eval_steps), final=best_state.replace(step=state.step), stopped=stopped)


def _postfix(ev: Mapping[str, np.ndarray], val: Optional[np.ndarray], active: Optional[np.ndarray], gone: np.ndarray) -> dict[str, str]:
    """The progress bar's numbers: mean test NLL of p_θ, validation NLL, seeds still training,
    seeds diverged (each only when there is one)."""
    def mean(v):
        v = np.asarray(v, np.float64)
        return f"{np.mean(v[np.isfinite(v)]):.3f}" if np.isfinite(v).any() else "nan"

    post = {}
    if "test_nll_p" in ev:
        post["test_nll_p"] = mean(ev["test_nll_p"])
    if val is not None:
        post["val_nll"] = mean(val)
    if active is not None:
        post["active"] = f"{int(active.sum())}/{active.size}"
    if gone.any():
        post["diverged"] = str(int(gone.sum()))
    return post


def _interruptible(fn: Callable[[], Any]) -> Any:
    """``fn()`` in a worker thread, so that Ctrl-C in the main thread acts at once: while XLA
    compiles, the main thread does not return to Python and a signal would wait for the compile
    to end (≈ 20 s for the dual step on 2 cores). The worker is a daemon: an interrupted compile
    is abandoned when the program exits."""
    out: dict[str, Any] = {}

    def work() -> None:
        try:
            out["value"] = fn()
        except BaseException as e:  # handed to the caller below
            out["error"] = e

    worker = threading.Thread(target=work, name="adasym-compile", daemon=True)
    worker.start()
    while worker.is_alive():
        worker.join(0.05)
    if "error" in out:
        raise out["error"]
    return out["value"]


def _progress(total: int, enabled: bool, desc: str, initial: int = 0):
    """A tqdm bar over ``total`` steps starting at ``initial`` (``None`` if not ``enabled``)."""
    if not enabled:
        return None
    try:
        from tqdm.auto import tqdm
    except ImportError:  # pragma: no cover - tqdm is a dependency
        return None
    return tqdm(total=total, initial=initial, desc=desc, unit="step", leave=False)
