"""Amortized posterior estimation end to end: simulate, train every seed at once, score with C2ST.

:func:`sbi_config` is D.4's settings (:func:`adasym_jax.presets.sbi`); :func:`train_sbi` trains the conditional dual method
(:mod:`adasym_jax.sbi.conditional`) or the NF baseline (maximum likelihood, i.e. neural posterior
estimation) through :class:`adasym_jax.runner.Trainer`'s compiled, seed-vmapped chunks, and
scores p_θ(· | u₀) against reference posterior samples after every chunk. :func:`write_run`
writes ``metrics.json``, ``config.json`` and a checkpoint that ``adasym sample`` reads.
"""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path
from typing import Any, Optional, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from adasym_jax.checkpoint import Standardization, save_checkpoint
from adasym_jax.config import TrainConfig
from adasym_jax.jit import tuned_jit
from adasym_jax.presets import SBI_RUN
from adasym_jax.presets import sbi as sbi_preset
from adasym_jax.runner import Trainer, raise_if_nonfinite, seed_list
from adasym_jax.sbi.c2st import c2st_mlp, c2st_paper
from adasym_jax.sbi.conditional import DEFAULT_ZETA_PER_CONDITION, make_conditional_step
from adasym_jax.sbi.tasks import SBITask, rejection_abc, simulate_dataset, validate_observation
from adasym_jax.state import TrainState

METHODS = ("adasym", "nf")
REFERENCES = ("exact", "abc")
NUM_POSTERIOR_SAMPLES = SBI_RUN["num_posterior_samples"]  # D.4: 5000 reference and 5000 model samples


def sbi_config(task: SBITask, method: str = "adasym", **overrides: Any) -> TrainConfig:
    """D.4's settings for ``task`` (:func:`adasym_jax.presets.sbi`'s config): flow of 4
    transforms × 8 bins; FiLM EBM (two moons: 3 blocks × 128, the others: 6 × 64, 2 FiLM
    layers); batch 1000; B.7 form; LR θ 1e-4, ψ 1e-5, λ 1e-6, λ_ζ 1e-2; ε_ζ = 30; λ starts at
    0.01. ``overrides`` are TrainConfig fields."""
    return sbi_preset(task, method, **overrides).config


@dataclasses.dataclass
class SBIResult:
    """What :func:`train_sbi` returns. Arrays are per seed (leading axis) and per evaluation.

    ``c2st`` maps protocol -> {"best": (S,), "last": (S,), "curve": (S, E) (paper protocol
    only)}; ``curves`` maps training metric -> (S, E) chunk means, plus ``val_nll`` (S, E),
    the exact NLL of p_θ on held-out simulations; ``eval_steps`` (E,).
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
        u = self.observation if observation is None else np.asarray(observation, np.float32)
        if u.shape != self.observation.shape:
            raise ValueError(f"observation must have shape {self.observation.shape}, got {u.shape}")
        z = np.asarray(self.trainer.sample(self.state, key, num, jnp.asarray(u)[None]))
        standardization = self.standardization()
        return z if standardization is None else standardization.invert(z)

    def standardization(self) -> Optional[Standardization]:
        """The map from training coordinates back to β, or ``None`` if β was not standardized."""
        std = self.settings["standardization"]  # {"mean", "std"} ({"mean", "scale"} before issue 11)
        return None if std is None else Standardization.from_dict(std)


def reference_samples(task: SBITask, observation, key, kind: str = "exact", num: int = NUM_POSTERIOR_SAMPLES, tolerance: float = 0.05) -> np.ndarray:
    """Reference posterior samples at u₀: the exact sampler or D.4's rejection ABC."""
    if kind not in REFERENCES:
        raise ValueError(f"unknown reference {kind!r}; choose one of {', '.join(REFERENCES)}")
    if kind == "exact":
        if task.posterior is None:
            raise ValueError(f"task {task.name!r} has no exact posterior; use reference='abc'")
        return np.asarray(task.posterior(key, observation, num), np.float32)
    return rejection_abc(task, key, observation, num, tolerance)


def train_sbi(
    task: SBITask,
    num_simulations: int,
    method: str = "adasym",
    seeds: int | Sequence[int] = 5,
    steps: int = 2000,
    eval_every: int = 200,
    observation=None,
    reference: str = "exact",
    zeta_per_condition: int = DEFAULT_ZETA_PER_CONDITION,
    data_seed: int = 0,
    mlp_c2st: bool = True,
    config: Optional[TrainConfig] = None,
    data: Optional[tuple[np.ndarray, np.ndarray]] = None,
    reference_draws: Optional[np.ndarray] = None,
    num_posterior_samples: int = NUM_POSTERIOR_SAMPLES,
    progress: bool = False,
) -> SBIResult:
    """Train ``method`` on ``num_simulations`` simulations of ``task`` for every seed at once.

    Every ``eval_every`` steps, ``num_posterior_samples`` samples of p_θ(· | u₀) per seed are
    scored by the paper's C2ST against the reference; the best (lowest accuracy, as in
    Figure 6's "best C2ST over the run") and the last scores are kept, and with
    ``mlp_c2st`` the SBI-benchmark C2ST is computed for the best and the last samples.
    ``data`` replaces the simulator by user pairs ``(β (n, d), u (n, k))``;
    ``reference_draws`` replaces the reference sampler. All input is checked before compiling.
    """
    if method not in METHODS:
        raise ValueError(f"unknown SBI method {method!r}; choose one of {', '.join(METHODS)}")
    if steps < 1 or eval_every < 1:
        raise ValueError("steps and eval_every must be >= 1")
    u0 = validate_observation(task, task.observation if observation is None else observation)
    seeds_ = seed_list(seeds)
    key = jax.random.PRNGKey(data_seed)
    k_sim, k_val, k_ref, k_eval = jax.random.split(key, 4)
    if data is None:
        beta, u = simulate_dataset(task, k_sim, num_simulations)
        val_beta, val_u = simulate_dataset(task, k_val, 1000)
    else:
        beta, u = (np.asarray(a, np.float32) for a in data)
        if beta.shape[1] != task.param_dim or u.shape[1] != task.obs_dim or len(beta) != len(u) or len(beta) < 2:
            raise ValueError(f"(β, u) pairs must be ({len(beta)}, {task.param_dim}) and ({len(beta)}, {task.obs_dim}), got {beta.shape} and {u.shape}")
        if not (np.all(np.isfinite(beta)) and np.all(np.isfinite(u))):
            raise ValueError("(β, u) pairs contain NaN or infinite values")
        num_simulations = len(beta)
        n_val = max(1, min(1000, len(beta) // 10))
        val_beta, val_u, beta, u = beta[:n_val], u[:n_val], beta[n_val:], u[n_val:]
    if reference_draws is None:
        ref = reference_samples(task, u0, k_ref, reference, num_posterior_samples)
    else:
        ref = np.asarray(reference_draws, np.float32)
        if ref.ndim != 2 or ref.shape[1] != task.param_dim:
            raise ValueError(f"reference samples must be (n, {task.param_dim}), got {ref.shape}")

    config = config or sbi_config(task, method)
    if config.context_dim != task.obs_dim:
        raise ValueError(f"config.context_dim={config.context_dim} but the task's obs_dim={task.obs_dim}")
    # Standardize β only if it leaves the spline's range; contexts stay raw (``adasym sample``
    # maps β back with the stored standardization and passes contexts unchanged).
    standardizer = Standardization.fit(beta) if np.max(np.abs(beta)) > 0.8 * config.bound else None
    to_z = lambda b: np.asarray(b if standardizer is None else standardizer.apply(b), np.float32)  # noqa: E731
    from_z = lambda z: np.asarray(z if standardizer is None else standardizer.invert(np.asarray(z)), np.float32)  # noqa: E731
    log_det = 0.0 if standardizer is None else standardizer.log_det

    trainer = Trainer(config, task.param_dim)
    if method == "adasym":
        trainer.step = make_conditional_step(config, trainer.flow, trainer.ebm, zeta_per_condition)
    x, ctx = jnp.asarray(to_z(beta)), jnp.asarray(u)
    vx, vctx = jnp.asarray(to_z(val_beta)), jnp.asarray(val_u)
    state = trainer.init(seeds_)
    n = x.shape[0]
    chunks = [eval_every] * (steps // eval_every) + ([steps % eval_every] if steps % eval_every else [])

    compile_seconds = 0.0
    compiled = {}
    for length in sorted(set(chunks)):
        t0 = time.perf_counter()
        compiled[length] = trainer.chunk(length, n).lower(state, x, ctx).compile()
        compile_seconds += time.perf_counter() - t0
    flow = trainer.flow
    u0_row = jnp.asarray(u0)[None, :]

    @tuned_jit
    def evaluate(st: TrainState, k):
        keys = jax.random.split(k, len(seeds_))

        def one(s, kk):
            val = -jnp.mean(flow.apply({"params": s.flow_params}, vx, vctx, method="log_prob")) + log_det
            smp = flow.apply({"params": s.flow_params}, kk, num_posterior_samples, u0_row, method="sample")
            return val, smp

        return jax.vmap(one)(st, keys)

    curves: dict[str, list] = {}
    c2st_curve, val_curve, eval_steps = [], [], []
    best = np.full(len(seeds_), np.inf)
    best_samples: list[Optional[np.ndarray]] = [None] * len(seeds_)
    run_seconds, done = 0.0, 0
    last_samples = None
    for i, length in enumerate(chunks):
        t0 = time.perf_counter()
        new_state, metrics = compiled[length](state, x, ctx)
        metrics = {k: np.asarray(v) for k, v in metrics.items()}
        run_seconds += time.perf_counter() - t0
        raise_if_nonfinite(metrics, new_state, state, done, length)
        state, done = new_state, done + length
        for k, v in metrics.items():
            curves.setdefault(k, []).append(v.mean(axis=1))
        val, smp = evaluate(state, jax.random.fold_in(k_eval, i))
        smp = from_z(smp)
        if not np.all(np.isfinite(smp)):
            raise FloatingPointError(f"p_θ(· | u₀) produced NaN or infinite samples at step {done}")
        scores = np.array([c2st_paper(ref, smp[s], seed=s) for s in range(len(seeds_))])
        for s in range(len(seeds_)):
            if scores[s] < best[s]:
                best[s], best_samples[s] = scores[s], smp[s]
        c2st_curve.append(scores)
        val_curve.append(np.asarray(val))
        eval_steps.append(done)
        last_samples = smp
        if progress:
            c2st_text = ", ".join(f"{v:.3f}" for v in scores)
            val_text = ", ".join(f"{v:.4g}" for v in np.asarray(val, np.float64))
            print(f"[{task.name} {method} N={num_simulations}] step {done}: C2ST [{c2st_text}] val NLL [{val_text}]", flush=True)

    c2st = {"paper": {"best": best, "last": np.asarray(c2st_curve[-1]), "curve": np.stack(c2st_curve, axis=1)}}
    if mlp_c2st:
        c2st["mlp"] = {
            "best": np.array([c2st_mlp(ref, best_samples[s], seed=s) for s in range(len(seeds_))]),
            "last": np.array([c2st_mlp(ref, last_samples[s], seed=s) for s in range(len(seeds_))]),
        }
    out_curves = {k: np.stack(v, axis=1) for k, v in curves.items()}
    out_curves["val_nll"] = np.stack(val_curve, axis=1)
    standardization = None if standardizer is None else standardizer.to_dict()
    settings = {
        "task": task.name,
        "method": method,
        "num_simulations": int(num_simulations),
        "observation": [float(v) for v in u0],
        "reference": reference if reference_draws is None else "user",
        "zeta_per_condition": int(zeta_per_condition) if method == "adasym" else None,
        "data_seed": int(data_seed),
        "steps": int(steps),
        "eval_every": int(eval_every),
        "num_posterior_samples": int(num_posterior_samples),
        "standardization": standardization,
    }
    return SBIResult(
        task=task.name,
        method=method,
        config=config,
        trainer=trainer,
        state=state,
        seeds=seeds_,
        observation=u0,
        num_simulations=int(num_simulations),
        eval_steps=eval_steps,
        c2st=c2st,
        curves=out_curves,
        steps_per_second=done / max(run_seconds, 1e-9),
        compile_seconds=compile_seconds,
        settings=settings,
    )


def _jsonable(v: Any) -> Any:
    if isinstance(v, dict):
        return {str(k): _jsonable(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_jsonable(x) for x in v]
    if isinstance(v, (np.ndarray, jax.Array)):
        return _jsonable(np.asarray(v).tolist())
    if isinstance(v, (float, np.floating)):
        return float(v) if np.isfinite(v) else None
    if isinstance(v, np.integer):
        return int(v)
    return v


def metrics_dict(result: SBIResult) -> dict[str, Any]:
    """The ``metrics.json`` content: settings, per-seed C2ST (both protocols, best and last),
    curves at ``eval_steps``, steps per second."""
    summary = {
        proto: {which: {"mean": float(np.mean(v)), "std": float(np.std(v))} for which, v in d.items() if which != "curve"}
        for proto, d in result.c2st.items()
    }
    return _jsonable(
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
    """Write ``metrics.json``, ``config.json`` and the checkpoint (read by ``adasym sample``)."""
    d = Path(out)
    d.mkdir(parents=True, exist_ok=True)
    save_checkpoint(d, result.state, result.config, result.trainer.dim, result.seeds, extra={"sbi": result.settings}, standardization=result.standardization())
    (d / "metrics.json").write_text(json.dumps(metrics_dict(result), indent=2, allow_nan=False))
    (d / "config.json").write_text(json.dumps(_jsonable({"config": result.config.to_dict(), "run": result.settings}), indent=2))
    return d
