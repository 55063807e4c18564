"""Run folders: what a training run writes, and what can be done with one afterwards.

A run folder holds ``config.json`` (the :class:`TrainConfig` plus the run's settings: data
source, steps, seeds, standardization), ``metrics.json`` (curves and summaries, see
:func:`metrics_from_fit`), the checkpoint of :mod:`adasym_jax.checkpoint` (``state.msgpack`` +
``checkpoint.json``) and PNG plots. Any folder with a readable ``checkpoint.json`` is a run.

All densities and samples here are in the *data's* coordinates: when a run standardized its
data, log-densities get the Jacobian term and samples are mapped back.
"""

from __future__ import annotations

import dataclasses
import json
import os
import warnings
import weakref
from pathlib import Path
from typing import Any, Optional

import jax
import jax.numpy as jnp
import numpy as np

from adasym_jax import objective as obj
from adasym_jax.checkpoint import (
    META_FILE,
    CheckpointError,
    Standardization,
    load_checkpoint,
    read_metadata,
    read_standardization,
)
from adasym_jax.config import EVAL_SEED, TrainConfig
from adasym_jax.files import write_json  # noqa: F401  (re-exported)
from adasym_jax.jit import tuned_jit
from adasym_jax.langevin import langevin
from adasym_jax.runner import FitResult, Trainer
from adasym_jax.state import TrainState
from adasym_jax.validation import check_context, check_points

CONFIG_FILE = "config.json"
METRICS_FILE = "metrics.json"
Array = jax.Array


class RunError(ValueError):
    """A folder is not a (readable) run, or a request does not fit the run."""


def _nan(a) -> np.ndarray:
    """JSON ``null`` -> NaN."""
    return np.array([[np.nan if v is None else v for v in row] for row in a], np.float64)


def metrics_from_fit(
    result: FitResult,
    standardizer: Optional[Standardization] = None,
    previous: Optional[dict[str, Any]] = None,
) -> dict[str, Any]:
    """The ``metrics.json`` contract for a (possibly resumed) run.

    Keys: ``method``, ``seeds``, ``eval_steps`` (E,), ``test_nll_p``, ``test_nll_q``,
    ``log_zeta`` (seeds × E), ``lambdas`` (name -> seeds × E, adasym only),
    ``best_test_nll_p``, ``last_test_nll_p``, ``best_test_nll_q``, ``last_test_nll_q``
    (seeds,), ``steps_per_second`` (compile excluded), ``compile_seconds``, ``final_step``
    and ``train`` (per-eval means of the per-step training metrics, seeds × E).
    Test NLLs are in data coordinates (``standardizer.log_det`` added; ``nll_units``). The
    ``train`` block holds what the optimizer saw, in the model's (standardized) coordinates:
    ``train_units`` says so and ``standardization_log_det`` is what to add to its NLLs
    (``fw_nll``, ``prx_nll``) for data units (0 without standardization); KL and log ζ are the
    same in both. ``previous`` (an earlier ``metrics.json`` of the same run) is prepended, so a
    resumed run has one continuous curve.

    With a validation split (``fit(validation_fraction=...)``) also ``val_nll`` (seeds × E, the
    exact NLL of p_θ on the validation rows, data units, ``null`` after a seed stopped),
    ``best_val_nll`` and ``best_val_step`` (seeds,); with early stopping (``patience``) also
    ``stopping_step`` and ``stopping_epoch`` (seeds,), ``steps_per_epoch``, and
    ``restored_test_nll_p`` / ``restored_test_nll_q`` (seeds,): the test NLLs of the returned
    state, each seed's best-validation evaluation (``last_*`` stay those of the last evaluation).
    """
    own = getattr(result, "standardization", None)
    if own is not None:  # fit standardized itself: its evals are already in data units
        if standardizer is not None and standardizer is not own:
            raise ValueError("the fit standardized its data itself; pass standardizer=None")
        standardizer = own
    shift = 0.0 if standardizer is None or own is not None else standardizer.log_det
    ev = result.evals
    # Per-step training metrics, summarized per chunk between evaluations: λ's at the chunk's
    # last step, everything else averaged over the chunk.
    steps_run = next(iter(result.history.values())).shape[1]
    final = int(np.asarray(result.state.step).reshape(-1)[0])
    bounds = np.diff([final - steps_run] + list(result.eval_steps))
    ends = np.cumsum(bounds)
    train: dict[str, np.ndarray] = {}
    for name, arr in result.history.items():
        if name.startswith("lambda_"):
            train[name] = arr[:, ends - 1]
        else:
            with warnings.catch_warnings():  # an early-stopped seed's chunks are all NaN
                warnings.simplefilter("ignore", RuntimeWarning)
                train[name] = np.stack([np.nanmean(arr[:, e - b : e], axis=1) for b, e in zip(bounds, ends)], axis=1)
    cur = {
        "eval_steps": np.asarray(result.eval_steps, np.int64),
        "test_nll_p": ev["test_nll_p"] + shift,
        "test_nll_q": ev["test_nll_q"] + shift,
        "log_zeta": ev["log_zeta"],
        "lambdas": {k[len("lambda_") :]: v for k, v in train.items() if k.startswith("lambda_")},
        "train": {k: v for k, v in train.items() if not k.startswith("lambda_")},
    }
    if result.trainer.config.method != "adasym":
        cur["lambdas"] = {}
    if previous:
        cur["eval_steps"] = np.concatenate([np.asarray(previous["eval_steps"], np.int64), cur["eval_steps"]])
        for k in ("test_nll_p", "test_nll_q", "log_zeta"):
            cur[k] = np.concatenate([_nan(previous[k]), cur[k]], axis=1)
        for group in ("lambdas", "train"):
            old = previous.get(group, {})
            cur[group] = {
                k: np.concatenate([_nan(old[k]), v], axis=1) if k in old else v for k, v in cur[group].items()
            }
    p, q = cur["test_nll_p"], cur["test_nll_q"]
    out = {
        "method": result.trainer.config.method,
        "flow": result.trainer.config.flow,  # which p_θ (the NF baseline uses the same one)
        "seeds": list(result.seeds),
        "eval_steps": cur["eval_steps"],
        "test_nll_p": p,
        "test_nll_q": q,
        "log_zeta": cur["log_zeta"],
        "lambdas": cur["lambdas"],
        "best_test_nll_p": np.nanmin(p, axis=1),
        "last_test_nll_p": p[:, -1],
        "best_test_nll_q": np.nanmin(q, axis=1),
        "last_test_nll_q": q[:, -1],
        "steps_per_second": float(result.steps_per_second),
        "compile_seconds": float(result.compile_seconds),
        "final_step": int(np.asarray(result.state.step).reshape(-1)[0]),
        "nll_units": "nats per point, data coordinates",
        "train": cur["train"],
        "train_units": (
            "standardized (model) coordinates: add standardization_log_det to fw_nll and prx_nll for data units"
            if standardizer is not None
            else "data coordinates (no standardization)"
        ),
        "standardization_log_det": 0.0 if standardizer is None else float(standardizer.log_det),
    }
    val = getattr(result, "val_curve", None)
    if val is not None:
        val = np.asarray(val, np.float64) + shift
        if previous:
            before = np.asarray(_nan(previous["val_nll"]) if "val_nll" in previous else np.full((val.shape[0], len(previous["eval_steps"])), np.nan))
            val = np.concatenate([before, val], axis=1)
        out["val_nll"] = val
        out["best_val_nll"] = np.asarray(result.best_val, np.float64) + shift
        out["best_val_step"] = np.asarray(result.best_step, np.int64)
    if getattr(result, "stopped_step", None) is not None:
        # the returned state is each seed's best-validation one: its test NLLs are those evaluated there
        at = [np.nonzero(out["eval_steps"] == b)[0] for b in np.asarray(result.best_step)]
        for k in ("test_nll_p", "test_nll_q"):
            out["restored_" + k] = np.array([out[k][s, i[-1]] if i.size else np.nan for s, i in enumerate(at)], np.float64)
        out["stopping_step"] = np.asarray(result.stopped_step, np.int64)
        out["stopping_epoch"] = np.asarray(result.stopped_epoch, np.float64)
        out["steps_per_epoch"] = int(result.steps_per_epoch)
    return out


# --------------------------------------------------------------------------------------
# Reading a run back
# --------------------------------------------------------------------------------------
@dataclasses.dataclass
class Run:
    """A loaded run folder: ``config``, run ``settings`` (``config.json``'s ``run`` part),
    checkpoint ``meta``, the stacked ``state``, a ``trainer`` and the ``standardizer``
    (``None`` if the run trained on raw data)."""

    directory: Path
    config: TrainConfig
    settings: dict[str, Any]
    meta: dict[str, Any]
    state: TrainState
    trainer: Trainer
    standardizer: Optional[Standardization]

    @property
    def dim(self) -> int:
        return int(self.meta["dim"])

    @property
    def seeds(self) -> list[int]:
        return [int(s) for s in self.meta["seeds"]]


def is_run(directory: str | os.PathLike) -> bool:
    """True if ``directory`` holds a checkpoint (``checkpoint.json``)."""
    return (Path(directory) / META_FILE).is_file()


def load_run(directory: str | os.PathLike) -> Run:
    """Load a run folder; raises :class:`RunError` with a one-line reason if it is not one."""
    d = Path(directory)
    if not d.is_dir():
        raise RunError(f"{d}: no such run folder")
    if not is_run(d):
        raise RunError(f"{d} is not a run folder (no {META_FILE}; train one with `adasym train --out {d}`)")
    try:
        meta = read_metadata(d)
        config = TrainConfig.from_dict(meta["config"])
        trainer = Trainer(config, int(meta["dim"]))
        state, meta = load_checkpoint(d, trainer.init(meta["seeds"]))
    except (CheckpointError, ValueError, TypeError, KeyError) as e:
        raise RunError(f"{d}: unreadable run ({str(e).splitlines()[0] if str(e) else type(e).__name__})") from None
    settings: dict[str, Any] = {}
    cfg_path = d / CONFIG_FILE
    if cfg_path.is_file():
        try:
            settings = json.loads(cfg_path.read_text()).get("run", {})
        except (json.JSONDecodeError, AttributeError):
            settings = {}
    try:
        standardizer = read_standardization(meta)
    except (ValueError, KeyError, TypeError) as e:
        raise RunError(f"{d}: bad standardization record ({e})") from None
    if standardizer is not None and standardizer.dim != int(meta["dim"]):
        raise RunError(f"{d}: standardization has dim {standardizer.dim}, the run has dim {meta['dim']}")
    return Run(d, config, settings, meta, state, trainer, standardizer)


# --------------------------------------------------------------------------------------
# Evaluating and sampling a run
# --------------------------------------------------------------------------------------
_COMPILED: "weakref.WeakKeyDictionary[Trainer, Any]" = weakref.WeakKeyDictionary()


def _log_density_fn(trainer: Trainer):
    """One jitted, seed-vmapped function per trainer (re-used across calls)."""
    if trainer not in _COMPILED:
        flow, ebm, m = trainer.flow, trainer.ebm, trainer.config.eval_zeta_samples

        def one_seed(state_: TrainState, z: Array, key: Array):
            log_p = flow.apply({"params": state_.flow_params}, z, method="log_prob")
            y, log_p_y = flow.apply({"params": state_.flow_params}, key, m, method="sample_and_log_prob")
            v = {"params": state_.ebm_params, "spectral": state_.ebm_stats}
            log_zeta = obj.log_zeta_estimate(ebm.apply(v, y), log_p_y)
            return log_p, ebm.apply(v, z) - log_zeta, log_zeta

        _COMPILED[trainer] = tuned_jit(jax.vmap(one_seed, in_axes=(0, None, None)))
    return _COMPILED[trainer]


def log_densities(trainer: Trainer, state: TrainState, x: np.ndarray, key: Optional[Array] = None) -> dict[str, np.ndarray]:
    """log p_θ(x) and log q̃_ψ(x) = f_ψ(x)/T − log ζ̂ for every seed of ``state``, in the
    model's coordinates. ``x (n, dim)``; returns ``log_p``, ``log_q`` (seeds × n) and
    ``log_zeta`` (seeds,), ζ̂ from ``config.eval_zeta_samples`` flow samples drawn with ``key``."""
    if trainer.config.context_dim:
        raise RunError("log-densities here cover unconditional models (context_dim = 0)")
    check_points(x, trainer.dim, "data", min_rows=1)
    z = jnp.asarray(x, jnp.float32)
    key = jax.random.PRNGKey(EVAL_SEED) if key is None else key
    log_p, log_q, log_zeta = _log_density_fn(trainer)(state, z, key)
    return {
        "log_p": np.asarray(log_p, np.float64),
        "log_q": np.asarray(log_q, np.float64),
        "log_zeta": np.asarray(log_zeta, np.float64),
    }


def evaluate_run(run: Run, x: np.ndarray, key: Optional[Array] = None) -> dict[str, np.ndarray]:
    """Per-point log-densities of data ``x (n, dim)`` (data coordinates) for every seed.

    Returns ``log_p`` (seeds × n) = log p_θ(x), ``log_q`` (seeds × n) = f_ψ(x)/T − log ζ̂,
    ``log_zeta`` (seeds,) with ζ̂ from ``config.eval_zeta_samples`` flow samples.
    """
    if run.config.context_dim:
        raise RunError("evaluate covers unconditional runs; this run is conditional (context_dim > 0)")
    check_points(x, run.dim, "data", min_rows=1)
    ev = log_densities(run.trainer, run.state, _to_model(run, x), key)
    shift = 0.0 if run.standardizer is None else run.standardizer.log_det
    return {"log_p": ev["log_p"] - shift, "log_q": ev["log_q"] - shift, "log_zeta": ev["log_zeta"]}


def _to_model(run: Run, x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, np.float32)
    return x if run.standardizer is None else np.asarray(run.standardizer.apply(x), np.float32)


def _context_rows(context: Optional[np.ndarray], context_dim: int, num: int) -> Optional[Array]:
    check_context(context, context_dim, num)
    if context is None:
        return None
    c = jnp.asarray(context, jnp.float32).reshape(-1, context_dim)
    return jnp.broadcast_to(c, (num, context_dim))


def sample_run(
    run: Run,
    num: int,
    key: Optional[Array] = None,
    model: str = "p",
    context: Optional[np.ndarray] = None,
    langevin_steps: int = 2000,
    step_size: float = 1e-4,
) -> np.ndarray:
    """``num`` samples per seed, ``(seeds, num, dim)`` in data coordinates.

    ``model="p"``: samples of p_θ. ``model="q"``: Langevin dynamics (eq. (8); D.4: 2000
    steps of size 1e-4) on log q̃_ψ, started from p_θ samples. ``context`` (``(context_dim,)``
    or ``(num, context_dim)``) is required for conditional runs and refused otherwise.
    """
    if model not in ("p", "q"):
        raise RunError(f"unknown model {model!r}; choose p or q")
    if num < 1:
        raise RunError(f"--num must be >= 1, got {num}")
    if langevin_steps < 0 or not step_size > 0:
        raise RunError("Langevin needs steps >= 0 and a step size > 0")
    try:
        ctx = _context_rows(context, run.config.context_dim, num)
    except ValueError as e:
        raise RunError(str(e)) from None
    key = jax.random.PRNGKey(0) if key is None else key
    flow, ebm = run.trainer.flow, run.trainer.ebm
    seeds = len(run.seeds)
    keys = jax.random.split(key, seeds)

    def one_seed(state: TrainState, k: Array):
        k_p, k_q = jax.random.split(k)
        y = flow.apply({"params": state.flow_params}, k_p, num, ctx, method="sample")
        if model == "q" and langevin_steps > 0:
            v = {"params": state.ebm_params, "spectral": state.ebm_stats}
            y = langevin(lambda z: ebm.apply(v, z, ctx), y, k_q, langevin_steps, step_size)
        return y

    out = tuned_jit(jax.vmap(one_seed))(run.state, keys)
    out = np.asarray(out)
    return out if run.standardizer is None else np.asarray(run.standardizer.invert(out), np.float32)
