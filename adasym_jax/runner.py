"""Many seeds, many steps: vmapped initialization, ``lax.scan`` chunks, evaluation, ``fit``.

The host only sees the run at chunk boundaries (evaluation points): each chunk is one
compiled call that runs ``eval_every`` steps for every seed at once.
"""

from __future__ import annotations

import dataclasses
import time
import warnings
from typing import Any, Callable, Optional, Sequence, Union

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from adasym_jax import minibatch as mb
from adasym_jax import objective as obj
from adasym_jax.checkpoint import Standardization
from adasym_jax.config import TrainConfig
from adasym_jax.jit import compiler_options, tuned_jit  # noqa: F401 - runner.tuned_jit is kept importable
from adasym_jax.state import TrainState, build_models, init_state
from adasym_jax.train import Batch, make_train_step
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
    (:class:`ResidualEBM`), ``step`` (the pure single-seed step of ``config.method``).
    """

    def __init__(self, config: TrainConfig, dim: int):
        if dim < 1:
            raise ValueError(f"dim must be >= 1, got {dim}")
        self.config = config
        self.dim = int(dim)
        self.flow, self.ebm = build_models(config, self.dim)
        self.step = make_train_step(config, self.flow, self.ebm)
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

        def one_seed(state: TrainState, x: Array, ctx: Optional[Array]):
            def body(s, _):
                if not minibatch:
                    return self.step(s, Batch(x, ctx))
                # Epochs (adasym_jax.minibatch): s.key is the epoch's key, fixed through the
                # epoch; the step gets a key of its own and s.key moves on at the epoch's end.
                k_order, k_step, k_after = mb.minibatch_keys(s.key, s.step, n, bs)
                idx = mb.batch_indices(k_order, s.step, n, bs)
                new, metrics = self.step(s.replace(key=k_step), Batch(x[idx], None if ctx is None else ctx[idx]))
                return new.replace(key=k_after), metrics

            return jax.lax.scan(body, state, None, length=num_steps)

        return tuned_jit(jax.vmap(one_seed, in_axes=(0, None, None)))

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
        key = jax.random.PRNGKey(12345) if key is None else key
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


def shard_seeds(state: TrainState, devices: Optional[Sequence[Any]] = None) -> TrainState:
    """Place the leading seed axis of ``state`` across ``devices`` (default: all).

    The number of seeds must be a multiple of the number of devices. Compiled chunks then
    run each device's seeds locally (data is replicated).
    """
    devices = list(jax.devices() if devices is None else devices)
    num_seeds = jax.tree.leaves(state)[0].shape[0]
    if num_seeds % len(devices):
        raise ValueError(f"{num_seeds} seeds do not divide over {len(devices)} devices")
    mesh = Mesh(np.array(devices), ("seed",))
    return jax.device_put(state, NamedSharding(mesh, PartitionSpec("seed")))


@dataclasses.dataclass
class FitResult:
    """What :func:`fit` returns: final ``state`` (seeds stacked), ``history`` of per-step
    training metrics ``(num_seeds, steps)``, ``evals`` of test metrics ``(num_seeds, n_evals)``
    at ``eval_steps``, and timings (compile excluded from ``steps_per_second``).

    ``standardization``: the :class:`~adasym_jax.checkpoint.Standardization` the data were
    mapped through before training (``None`` for raw data; see ``fit(standardize=...)``). The
    model (``state``, ``trainer``) then works in standardized coordinates; ``evals``' test
    NLLs are in data units (``standardization.log_det`` added), while ``log_zeta`` and the
    per-step training ``history`` stay in the model's coordinates."""

    trainer: Trainer
    state: TrainState
    seeds: list[int]
    history: dict[str, np.ndarray]
    eval_steps: list[int]
    evals: dict[str, np.ndarray]
    steps_per_second: float
    compile_seconds: float
    standardization: Optional[Standardization] = None

    @property
    def last_test_nll_p(self) -> np.ndarray:
        """Test NLL of p_θ at the last evaluation, per seed."""
        return self.evals["test_nll_p"][:, -1]

    @property
    def best_test_nll_p(self) -> np.ndarray:
        """Lowest test NLL of p_θ over the evaluations, per seed."""
        return np.nanmin(self.evals["test_nll_p"], axis=1)


def first_nonfinite(metrics: dict[str, np.ndarray], state: TrainState, step0: int) -> Optional[tuple[str, int]]:
    worst = None
    for name, arr in metrics.items():
        bad = ~np.isfinite(arr)
        if bad.any():
            first = int(np.argmax(bad.any(axis=0)))
            if worst is None or first < worst[1]:
                worst = (name, first)
    if worst is not None:
        return worst[0], step0 + worst[1] + 1
    for path, leaf in jax.tree_util.tree_leaves_with_path(state):
        if not np.all(np.isfinite(np.asarray(leaf, dtype=np.float64))):
            return jax.tree_util.keystr(path), -1
    return None


def raise_if_nonfinite(metrics: dict[str, np.ndarray], new_state: TrainState, last_good: TrainState, done: int, length: int) -> None:
    """Raise :class:`NonFiniteError` (naming the first non-finite quantity and its step, and
    carrying ``last_good``, the state at step ``done``) if a chunk of ``length`` steps starting
    after step ``done`` produced NaN/inf in its ``metrics`` (arrays ``(seeds, length)``) or in
    ``new_state``."""
    bad = first_nonfinite(metrics, new_state, done)
    if bad is None:
        return
    name, at = bad
    where = f"at step {at}" if at > 0 else f"in the state after step {done + length}"
    raise NonFiniteError(
        f"training diverged: {name} became NaN or infinite {where}; the last good state is from step {done}",
        last_good,
        at,
        name,
    )


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


def fit(
    data: Array,
    *,
    config: TrainConfig = TrainConfig(),
    seeds: Seeds = 5,
    num_steps: int = 1000,
    eval_every: int = 100,
    test_data: Optional[Array] = None,
    state: Optional[TrainState] = None,
    progress: bool = True,
    trainer: Optional[Trainer] = None,
    on_eval: Optional[Callable[["FitResult"], None]] = None,
    standardize: Union[bool, str, Standardization] = "auto",
) -> FitResult:
    """Train ``config.method`` on ``data (n, dim)`` for every seed at once.

    Runs ``num_steps`` steps in compiled chunks of ``eval_every`` (a shorter last chunk if
    needed), evaluating on ``test_data`` (default: ``data``) after each chunk. Stops with
    :class:`NonFiniteError` naming the quantity and step if anything becomes NaN/inf; the
    error carries the last good state. ``state`` resumes a previous run.

    ``on_eval(result)``, if given, is called after each evaluation with a :class:`FitResult`
    of the chunks finished so far (e.g. to save a checkpoint or update a progress bar).
    Ctrl-C (``KeyboardInterrupt``, also during compilation or inside ``on_eval``) becomes
    :class:`FitInterrupted`, carrying the state and the :class:`FitResult` of the last
    finished chunk.

    ``standardize`` (see :func:`choose_standardization`): ``"auto"`` standardizes data that
    leave the splines' range ``[-config.bound, config.bound]`` and says so; ``True`` / ``False``
    force it; a :class:`~adasym_jax.checkpoint.Standardization` is used as given. When the
    data are standardized, data and test data are mapped through it, the result carries it as
    ``result.standardization`` and its test NLLs (and the progress bar's) are in data units.
    """
    check_points(data, None, "data", min_rows=2)
    if config.context_dim:
        raise ValueError("fit() covers unconditional models; drive Trainer.run with a context")
    if num_steps < 1 or eval_every < 1:
        raise ValueError("num_steps and eval_every must be >= 1")
    dim = data.shape[1]
    test = data if test_data is None else test_data
    check_points(test, dim, "test data", min_rows=1)
    standardizer = choose_standardization(standardize, data, config.bound)
    if standardizer is not None:
        data, test = (np.asarray(standardizer.apply(np.asarray(a, np.float32)), np.float32) for a in (data, test))
    x = jnp.asarray(data, jnp.float32)
    trainer = trainer or Trainer(config, dim)

    def evaluate(s: TrainState) -> dict[str, np.ndarray]:  # test NLLs in data units
        ev = trainer.evaluate(s, test)
        if standardizer is None:
            return ev
        return {k: v + standardizer.log_det if k in NLL_KEYS else v for k, v in ev.items()}

    seeds_ = seed_list(seeds)
    state = trainer.init(seeds_) if state is None else state
    start = int(np.asarray(state.step).reshape(-1)[0])

    chunks = [eval_every] * (num_steps // eval_every) + ([num_steps % eval_every] if num_steps % eval_every else [])
    history: dict[str, list] = {}
    evals: dict[str, list] = {}
    eval_steps: list[int] = []
    timing = {"run": 0.0, "compile": 0.0}
    # (state, step, chunks recorded): rebound in one assignment once a chunk is fully recorded,
    # so an interrupt anywhere sees a consistent last finished chunk.
    committed = (state, start, 0)

    def result_of(n: int) -> FitResult:
        good, step, _ = committed
        return FitResult(
            trainer=trainer,
            state=good,
            seeds=seeds_,
            history={k: np.concatenate(v[:n], axis=1) for k, v in history.items()},
            eval_steps=eval_steps[:n],
            evals={k: np.stack(v[:n], axis=1) for k, v in evals.items()},
            steps_per_second=(step - start) / max(timing["run"], 1e-9),
            compile_seconds=timing["compile"],
            standardization=standardizer,
        )

    bar = None
    try:
        compiled = {}
        for length in sorted(set(chunks)):
            t0 = time.perf_counter()
            compiled[length] = trainer.chunk(length, x.shape[0]).lower(state, x, None).compile()
            timing["compile"] += time.perf_counter() - t0

        bar = _progress(num_steps, progress, config.method)
        done = start
        for length in chunks:
            t0 = time.perf_counter()
            new_state, metrics = compiled[length](state, x, None)
            metrics = {k: np.asarray(v) for k, v in metrics.items()}
            timing["run"] += time.perf_counter() - t0
            raise_if_nonfinite(metrics, new_state, state, done, length)
            state, done = new_state, done + length
            ev = evaluate(state)
            for k, v in metrics.items():
                history.setdefault(k, []).append(v)
            for k, v in ev.items():
                evals.setdefault(k, []).append(v)
            eval_steps.append(done)
            committed = (state, done, len(eval_steps))
            if bar is not None:
                bar.update(length)
                bar.set_postfix(test_nll_p=f"{np.mean(ev['test_nll_p']):.3f}")
            if on_eval is not None:
                on_eval(result_of(len(eval_steps)))
    except FitInterrupted:
        raise
    except KeyboardInterrupt:
        good, step, n = committed
        raise FitInterrupted(
            f"interrupted; the last finished chunk ended at step {step}", good, step, result_of(n) if n else None
        ) from None
    finally:
        if bar is not None:
            bar.close()
    return result_of(len(eval_steps))


def _progress(total: int, enabled: bool, desc: str, initial: int = 0):
    """A tqdm bar over ``total`` steps starting at ``initial`` (``None`` if not ``enabled``)."""
    if not enabled:
        return None
    try:
        from tqdm.auto import tqdm
    except ImportError:  # pragma: no cover - tqdm is a dependency
        return None
    return tqdm(total=total, initial=initial, desc=desc, unit="step", leave=False)
