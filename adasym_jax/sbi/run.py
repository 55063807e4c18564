"""Amortized posterior estimation end to end: simulate, train every seed at once, score with C2ST.

:func:`sbi_config` is D.4's settings (:func:`adasym_jax.presets.sbi`); :func:`train_sbi` trains the conditional dual method
(ζ per condition, B.6: ``TrainConfig.zeta_per_condition``) or the NF baseline (maximum
likelihood, i.e. neural posterior estimation) through :func:`adasym_jax.runner.fit`, the one
training loop, with a C2ST evaluator that scores p_θ(· | u₀) against reference posterior
samples every ``c2st_every``-th evaluation and at the returned state. :func:`write_run`
writes ``metrics.json``, ``config.json`` and a checkpoint that ``adasym sample`` reads.
"""

from __future__ import annotations

import dataclasses
import warnings
from pathlib import Path
from typing import Any, Optional, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from adasym_jax.checkpoint import Standardization, save_checkpoint
from adasym_jax.config import TrainConfig
from adasym_jax.files import jsonable, write_json
from adasym_jax.presets import SBI_RUN
from adasym_jax.presets import sbi as sbi_preset
from adasym_jax.runner import FitResult, Trainer, fit, seed_list, steps_per_epoch, validation_split
from adasym_jax.sbi.c2st import c2st_mlp, c2st_paper
from adasym_jax.sbi.tasks import SBITask, in_prior, rejection_abc, simulate_dataset, validate_observation
from adasym_jax.state import TrainState

METHODS = ("adasym", "nf")
REFERENCES = ("exact", "abc")
NUM_POSTERIOR_SAMPLES = SBI_RUN["num_posterior_samples"]  # D.4: 5000 reference and 5000 model samples
VALIDATION_FRACTION = 0.1  # sbi's NPE: 10 % of the simulations held out
MIN_EVAL_EVERY = 100  # convergence runs evaluate every epoch, but at least every this many steps


def sbi_config(task: SBITask, method: str = "adasym", **overrides: Any) -> TrainConfig:
    """D.4's settings for ``task`` (:func:`adasym_jax.presets.sbi`'s config): flow of 4
    transforms × 8 bins; FiLM EBM (two moons: 3 blocks × 128, the others: 6 × 64, 2 FiLM
    layers); batch 1000; B.7 form; LR θ 1e-4, ψ 1e-5, λ 1e-6, λ_ζ 1e-2; ε_ζ = 30; λ starts at
    0.01. ``overrides`` are TrainConfig fields."""
    return sbi_preset(task, method, **overrides).config


@dataclasses.dataclass
class SBIResult:
    """What :func:`train_sbi` returns. Arrays are per seed (leading axis) and per evaluation.

    ``c2st`` maps protocol -> scores: ``"paper"`` has ``"final"`` (S,) (the returned state) and,
    with the C2ST curve, ``"best"``, ``"last"`` (S,) and ``"curve"`` (S, E) (NaN at evaluations
    that were not scored); ``"mlp"`` has ``"final"`` and, with the curve, ``"best"`` (the
    SBI-benchmark C2ST of the best-scoring samples). ``curves`` maps training metric -> (S, E)
    chunk means, plus ``val_nll`` (S, E), the exact NLL of p_θ on the held-out simulations
    (with ``validation_fraction`` > 0); ``eval_steps`` (E,).
    """

    task: str
    method: str
    config: TrainConfig
    trainer: Trainer
    state: TrainState
    seeds: list[int]
    observation: np.ndarray
    num_simulations: int
    eval_steps: list[int]
    c2st: dict[str, dict[str, np.ndarray]]
    curves: dict[str, np.ndarray]
    steps_per_second: float
    compile_seconds: float
    settings: dict[str, Any]

    def sample_posterior(self, key: jax.Array, num: int, observation=None) -> np.ndarray:
        """``num`` samples of p_θ(β | u) per seed, ``(S, num, param_dim)``, in the task's units
        (β is standardized for training when it leaves the spline's range; ``trainer.sample``
        returns the standardized values, this maps them back). ``observation`` defaults to u₀."""
        return posterior_samples(self.trainer, self.state, key, num, self._condition(observation), self.standardization())

    def sample_posterior_in_prior(self, task: SBITask, key: jax.Array, num: int, observation=None, max_rounds: int = 100) -> tuple[np.ndarray, np.ndarray]:
        """``num`` samples of p_θ(β | u) per seed inside ``task``'s uniform prior box, by rejection
        as sbi's posterior samples, ``(S, num, param_dim)``, and each seed's acceptance rate ``(S,)``
        (an estimate of 1 − the posterior mass p_θ leaks outside the prior). The first round draws with ``key``
        itself, so with nothing outside the box this equals :meth:`sample_posterior`."""
        return posterior_samples_in_prior(self.trainer, self.state, key, num, self._condition(observation), self.standardization(), task, max_rounds)

    def _condition(self, observation) -> np.ndarray:
        """``observation`` as float32 ``(k,)``, u₀ when ``None``; ``ValueError`` for another shape."""
        u = self.observation if observation is None else np.asarray(observation, np.float32)
        if u.shape != self.observation.shape:
            raise ValueError(f"observation must have shape {self.observation.shape}, got {u.shape}")
        return u

    def standardization(self) -> Optional[Standardization]:
        """The map from training coordinates back to β, or ``None`` if β was not standardized."""
        std = self.settings["standardization"]  # {"mean", "std"} ({"mean", "scale"} before issue 11)
        return None if std is None else Standardization.from_dict(std)


def posterior_samples(trainer: Trainer, state: TrainState, key: jax.Array, num: int, observation, standardization: Optional[Standardization]) -> np.ndarray:
    """``num`` samples of p_θ(β | u) per seed at ``observation`` u ``(k,)``, ``(S, num, d)``,
    mapped back to β's units through ``standardization`` (``None``: β was not standardized)."""
    z = np.asarray(trainer.sample(state, key, num, jnp.asarray(observation, jnp.float32)[None, :]))
    return z if standardization is None else np.asarray(standardization.invert(z), np.float32)


def posterior_samples_in_prior(
    trainer: Trainer, state: TrainState, key: jax.Array, num: int, observation, standardization: Optional[Standardization], task: SBITask, max_rounds: int = 100
) -> tuple[np.ndarray, np.ndarray]:
    """:func:`posterior_samples` restricted to ``task``'s prior box by rejection: rounds of ``num``
    draws (the first with ``key``, round r with ``fold_in(key, r)``) until every seed has ``num``
    inside. Returns ``(S, num, d)`` and the acceptance rate per seed ``(S,)``; ``ValueError`` if a
    seed has fewer than ``num`` inside after ``max_rounds`` rounds (acceptance below ~1/max_rounds)."""
    if task.prior_low is None or task.prior_high is None:
        raise ValueError(f"task {task.name!r} has no uniform prior box to restrict samples to")
    if max_rounds < 1 or num < 1:
        raise ValueError(f"num and max_rounds must be at least 1, got {num} and {max_rounds}")
    draws, masks, inside = [], [], 0
    for r in range(max_rounds):
        z = posterior_samples(trainer, state, key if r == 0 else jax.random.fold_in(key, r), num, observation, standardization)
        draws.append(z)
        masks.append(np.asarray(in_prior(task, z)))  # (S, num)
        inside = inside + masks[-1].sum(axis=1)  # (S,)
        if np.all(inside >= num):
            break
    else:
        raise ValueError(f"fewer than {num} of {num * max_rounds} posterior samples inside the prior box for seed(s) "
                         f"{np.flatnonzero(inside < num).tolist()} (acceptance {np.round(inside / (num * max_rounds), 4).tolist()})")
    z, ok = np.concatenate(draws, axis=1), np.concatenate(masks, axis=1)  # (S, rounds * num, d), (S, rounds * num)
    return np.stack([z_s[ok_s][:num] for z_s, ok_s in zip(z, ok)]), inside / ok.shape[1]


def reference_samples(task: SBITask, observation, key, kind: str = "exact", num: int = NUM_POSTERIOR_SAMPLES, tolerance: float = 0.05) -> np.ndarray:
    """Reference posterior samples at u₀: the exact sampler or D.4's rejection ABC."""
    if kind not in REFERENCES:
        raise ValueError(f"unknown reference {kind!r}; choose one of {', '.join(REFERENCES)}")
    if kind == "exact":
        if task.posterior is None:
            raise ValueError(f"task {task.name!r} has no exact posterior; use reference='abc'")
        return np.asarray(task.posterior(key, observation, num), np.float32)
    return rejection_abc(task, key, observation, num, tolerance)


def _val_cell(value: float, diverged_step: int) -> str:
    """One seed's validation NLL in the progress line; a seed that no longer trains shows why."""
    if np.isfinite(value):
        return f"{value:.4g}"
    return f"diverged at step {diverged_step}" if diverged_step >= 0 else "stopped"


def train_sbi(
    task: SBITask,
    num_simulations: int,
    method: str = "adasym",
    seeds: int | Sequence[int] = 5,
    steps: int = 2000,
    eval_every: Optional[int] = 200,
    observation=None,
    reference: str = "exact",
    data_seed: int = 0,
    mlp_c2st: bool = True,
    config: Optional[TrainConfig] = None,
    data: Optional[tuple[np.ndarray, np.ndarray]] = None,
    reference_draws: Optional[np.ndarray] = None,
    num_posterior_samples: int = NUM_POSTERIOR_SAMPLES,
    progress: bool = False,
    patience: Optional[int] = None,
    validation_fraction: float = VALIDATION_FRACTION,
    c2st_curve: bool = True,
    c2st_every: int = 1,
    standardize: Any = "auto",
) -> SBIResult:
    """Train ``method`` on ``num_simulations`` simulations of ``task`` for every seed at once,
    through :func:`adasym_jax.runner.fit` (the library's one training loop).

    ``validation_fraction`` of the simulations (default 10 %, sbi's NPE) are held out; the
    exact NLL of p_θ on them is the validation curve. ``patience`` ``None`` (default): a fixed
    ``steps`` (the paper's runs); an integer: train to convergence as sbi's NPE does (stop a
    seed after ``patience`` evaluations without a lower validation loss, keep its best
    parameters), with ``steps`` as the cap. ``eval_every`` ``None``: one epoch, at least
    :data:`MIN_EVAL_EVERY` steps (a full-batch epoch is one step).

    Scores (``result.c2st``): with ``c2st_curve``, every ``c2st_every``-th evaluation scores
    ``num_posterior_samples`` samples of p_θ(· | u₀) per seed by the paper's C2ST against the
    reference (``"curve"``; ``"best"``, the lowest, is Figure 6's "best C2ST over the run";
    ``"last"`` the last scored point; the other evaluations hold NaN); ``"final"`` always scores the returned state (each seed's
    best-validation state under early stopping, else the last). ``mlp_c2st`` adds the
    SBI-benchmark C2ST of the best (with the curve) and the final samples. ``data`` replaces
    the simulator by user pairs ``(β (n, d), u (n, k))``; ``reference_draws`` replaces the
    reference sampler. ``standardize`` is :func:`~adasym_jax.runner.fit`'s (``"auto"``: β is
    standardized only when it leaves the splines' range; ``True``: always, as sbi's NPE
    z-scores β). All input is checked before compiling.
    """
    if method not in METHODS:
        raise ValueError(f"unknown SBI method {method!r}; choose one of {', '.join(METHODS)}")
    if steps < 1 or (eval_every is not None and eval_every < 1) or c2st_every < 1:
        raise ValueError("steps, eval_every and c2st_every must be >= 1")
    u0 = validate_observation(task, task.observation if observation is None else observation)
    seeds_ = seed_list(seeds)
    key = jax.random.PRNGKey(data_seed)
    k_sim, _, k_ref, k_eval = jax.random.split(key, 4)
    if data is None:
        beta, u = simulate_dataset(task, k_sim, num_simulations)
    else:
        beta, u = (np.asarray(a, np.float32) for a in data)
        if beta.ndim != 2 or u.ndim != 2 or beta.shape[1] != task.param_dim or u.shape[1] != task.obs_dim or len(beta) != len(u) or len(beta) < 2:
            raise ValueError(f"(β, u) pairs must be ({len(beta)}, {task.param_dim}) and ({len(beta)}, {task.obs_dim}), got {beta.shape} and {u.shape}")
        if not (np.all(np.isfinite(beta)) and np.all(np.isfinite(u))):
            raise ValueError("(β, u) pairs contain NaN or infinite values")
        num_simulations = len(beta)
    if reference_draws is None:
        ref = reference_samples(task, u0, k_ref, reference, num_posterior_samples)
    else:
        ref = np.asarray(reference_draws, np.float32)
        if ref.ndim != 2 or ref.shape[1] != task.param_dim:
            raise ValueError(f"reference samples must be (n, {task.param_dim}), got {ref.shape}")

    config = config or sbi_config(task, method)
    if config.context_dim != task.obs_dim:
        raise ValueError(f"config.context_dim={config.context_dim} but the task's obs_dim={task.obs_dim}")
    if eval_every is None:
        n_train = len(validation_split(len(beta), validation_fraction)[0])
        eval_every = max(steps_per_epoch(config, n_train), MIN_EVAL_EVERY)
    trainer = Trainer(config, task.param_dim)
    c2st = C2STEvaluator(trainer, ref, u0, k_eval, num_posterior_samples, every=c2st_every)
    on_eval = None
    if progress:
        def on_eval(r: FitResult) -> None:
            parts = [f"[{task.name} {method} N={num_simulations}] step {r.eval_steps[-1]}:"]
            if "c2st" in r.evals and np.isfinite(r.evals["c2st"][:, -1]).all():
                parts.append("C2ST [" + ", ".join(f"{v:.3f}" for v in r.evals["c2st"][:, -1]) + "]")
            if r.val_curve is not None:
                parts.append("val NLL [" + ", ".join(_val_cell(v, d) for v, d in zip(r.val_curve[:, -1], r.diverged_step)) + "]")
            print(" ".join(parts), flush=True)

    fitted = fit(
        beta, context=u, config=config, seeds=seeds_, num_steps=steps, eval_every=eval_every, trainer=trainer,
        progress=False, on_eval=on_eval, validation_fraction=validation_fraction, patience=patience,
        evaluators=[c2st] if c2st_curve else [], standardize=standardize,
    )
    final_samples = c2st.posterior_samples(fitted.state, fitted.standardization, jax.random.fold_in(k_eval, 10**6))
    scores: dict[str, np.ndarray] = {"final": np.array([c2st_paper(ref, final_samples[s], seed=s) for s in range(len(seeds_))])}
    if c2st_curve:
        curve = fitted.evals["c2st"]
        scored = np.isfinite(curve).any(axis=0)
        scores.update(best=np.nanmin(curve[:, scored], axis=1), last=curve[:, scored][:, -1], curve=curve)
    out_c2st = {"paper": scores}
    if mlp_c2st:
        mlp = {"final": np.array([c2st_mlp(ref, final_samples[s], seed=s) for s in range(len(seeds_))])}
        if c2st_curve:
            mlp["best"] = np.array([c2st_mlp(ref, c2st.best_samples[s], seed=s) for s in range(len(seeds_))])
        out_c2st["mlp"] = mlp
    curves = {k: _chunk_means(v, fitted.eval_steps, 0) for k, v in fitted.history.items()}
    if fitted.val_curve is not None:
        curves["val_nll"] = fitted.val_curve
    settings = {
        "task": task.name,
        "method": method,
        "num_simulations": int(num_simulations),
        "observation": [float(v) for v in u0],
        "reference": reference if reference_draws is None else "user",
        "zeta_per_condition": int(config.zeta_per_condition) if method == "adasym" else None,
        "data_seed": int(data_seed),
        "steps": int(steps),
        "eval_every": int(eval_every),
        "num_posterior_samples": int(num_posterior_samples),
        "standardization": None if fitted.standardization is None else fitted.standardization.to_dict(),
        "validation_fraction": float(validation_fraction),
        "patience": patience,
    }
    if patience is not None:
        settings["stopped_step"] = [int(v) for v in fitted.stopped_step]
        settings["stopped_epoch"] = [float(v) for v in fitted.stopped_epoch]
        settings["best_step"] = [int(v) for v in fitted.best_step]
    return SBIResult(
        task=task.name,
        method=method,
        config=config,
        trainer=trainer,
        state=fitted.state,
        seeds=seeds_,
        observation=u0,
        num_simulations=int(num_simulations),
        eval_steps=fitted.eval_steps,
        c2st=out_c2st,
        curves=curves,
        steps_per_second=fitted.steps_per_second,
        compile_seconds=fitted.compile_seconds,
        settings=settings,
    )


def _chunk_means(history: np.ndarray, eval_steps: list[int], start: int) -> np.ndarray:
    """Per-step training metrics ``(S, steps)`` -> their mean over each chunk ``(S, E)``."""
    bounds = np.diff([start, *eval_steps])
    edges = np.cumsum(bounds)[:-1]
    with warnings.catch_warnings():  # a chunk where a seed did not train is all NaN
        warnings.simplefilter("ignore", RuntimeWarning)
        return np.stack([np.nanmean(part, axis=1) if part.size else np.full(len(part), np.nan) for part in np.split(history, edges, axis=1)], axis=1)


class C2STEvaluator:
    """A :func:`~adasym_jax.runner.fit` evaluator: ``num`` samples of p_θ(· | u₀) per seed
    (mapped back to β's units) scored by the paper's C2ST against ``reference``, as ``c2st``,
    at every ``every``-th call (the first included; NaN at the others: C2ST costs seconds per
    seed). Keeps each seed's lowest-scoring samples (``best_samples``) for the SBI-benchmark C2ST."""

    def __init__(self, trainer: Trainer, reference: np.ndarray, observation: np.ndarray, key: jax.Array, num: int, every: int = 1):
        self.trainer, self.reference, self.key, self.num, self.every = trainer, reference, key, int(num), int(every)
        self.observation = np.asarray(observation, np.float32)
        self.best = None
        self.best_samples: list[Optional[np.ndarray]] = []
        self.calls = 0

    def posterior_samples(self, state: TrainState, standardization, key: jax.Array) -> np.ndarray:
        """``(S, num, param_dim)`` samples of p_θ(β | u₀) in β's units; non-finite is an error."""
        smp = posterior_samples(self.trainer, state, key, self.num, self.observation, standardization)
        if not np.all(np.isfinite(smp)):
            raise FloatingPointError(f"p_θ(· | u₀) produced NaN or infinite samples at step {int(np.asarray(state.step).reshape(-1)[0])}")
        return smp

    def __call__(self, state: TrainState, standardization) -> dict[str, np.ndarray]:
        call, self.calls = self.calls, self.calls + 1
        if call % self.every:
            return {"c2st": np.full(int(np.asarray(state.step).reshape(-1).shape[0]), np.nan)}
        smp = self.posterior_samples(state, standardization, jax.random.fold_in(self.key, call))
        scores = np.array([c2st_paper(self.reference, smp[s], seed=s) for s in range(len(smp))])
        if self.best is None:
            self.best, self.best_samples = np.full(len(smp), np.inf), [None] * len(smp)
        for s in np.where(scores < self.best)[0]:
            self.best[s], self.best_samples[s] = scores[s], smp[s]
        return {"c2st": scores}


def metrics_dict(result: SBIResult) -> dict[str, Any]:
    """The ``metrics.json`` content: settings, per-seed C2ST (both protocols, best and last),
    curves at ``eval_steps``, steps per second."""
    summary = {
        proto: {which: {"mean": float(np.mean(v)), "std": float(np.std(v))} for which, v in d.items() if which != "curve"}
        for proto, d in result.c2st.items()
    }
    return jsonable(
        {
            **result.settings,
            "config": result.config.to_dict(),
            "seeds": result.seeds,
            "eval_steps": result.eval_steps,
            "c2st": result.c2st,
            "c2st_summary": summary,
            "curves": result.curves,
            "steps_per_second": result.steps_per_second,
            "compile_seconds": result.compile_seconds,
        }
    )


def write_run(result: SBIResult, out: str) -> Path:
    """Write ``metrics.json``, ``config.json`` (atomically) and the checkpoint (read by ``adasym sample``)."""
    d = Path(out)
    d.mkdir(parents=True, exist_ok=True)
    save_checkpoint(d, result.state, result.config, result.trainer.dim, result.seeds, extra={"sbi": result.settings}, standardization=result.standardization())
    write_json(d / "metrics.json", metrics_dict(result))
    write_json(d / "config.json", {"config": result.config.to_dict(), "run": result.settings})
    return d
