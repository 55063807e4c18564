"""Shared pieces of the 2D benchmarks (gmm40.py, density2d.py): a NaN-tolerant multi-member
training loop, summaries and formatting.

The loop uses the library's compiled chunks (``Trainer.chunk``) and ``Trainer.evaluate``
directly instead of ``fit`` so that one diverging member (a P-W pair, a WGAN seed) does not
stop the others: its curve simply turns NaN and the step where it did so is recorded.
"""

from __future__ import annotations

import dataclasses
import platform
import sys
import time
from typing import Optional

import jax
import numpy as np

from adasym_jax.runner import Trainer
from adasym_jax.state import TrainState


@dataclasses.dataclass
class Curves:
    """Test curves of every member (rows) at ``eval_steps`` plus timings."""

    label: str
    eval_steps: np.ndarray
    test_nll_p: np.ndarray  # (members, E)
    test_nll_q: np.ndarray
    log_zeta: np.ndarray
    lambdas: dict  # name -> (members, E), λ at each evaluation
    diverged_at: np.ndarray  # (members,) first step with a non-finite metric, or -1
    steps_per_second: float
    compile_seconds: float
    state: TrainState

    @property
    def best(self) -> np.ndarray:
        return np.nanmin(np.where(np.isfinite(self.test_nll_p), self.test_nll_p, np.nan), axis=1)

    @property
    def last(self) -> np.ndarray:
        return self.test_nll_p[:, -1]


def train_members(
    trainer: Trainer,
    state: TrainState,
    x: np.ndarray,
    test: np.ndarray,
    steps: int,
    eval_every: int,
    label: str,
    log=print,
) -> Curves:
    """Train all members of ``state`` for ``steps`` steps, evaluating every ``eval_every``."""
    x = np.asarray(x, np.float32)
    members = int(np.asarray(state.step).shape[0])
    lengths = [eval_every] * (steps // eval_every) + ([steps % eval_every] if steps % eval_every else [])
    t0 = time.perf_counter()
    compiled = {n: trainer.chunk(n, x.shape[0]).lower(state, x, None).compile() for n in sorted(set(lengths))}
    trainer.evaluate(state, test)  # compiles the evaluation
    compile_seconds = time.perf_counter() - t0
    evals: dict[str, list] = {"test_nll_p": [], "test_nll_q": [], "log_zeta": []}
    lambdas: dict[str, list] = {}
    diverged = np.full(members, -1)
    eval_steps, done, run_seconds = [], 0, 0.0
    for n in lengths:
        t = time.perf_counter()
        state, metrics = compiled[n](state, x, None)
        metrics = jax.device_get(metrics)
        run_seconds += time.perf_counter() - t
        done += n
        for name, arr in metrics.items():
            bad = ~np.isfinite(np.asarray(arr))
            for m in np.where(bad.any(axis=1) & (diverged < 0))[0]:
                diverged[m] = done - n + int(np.argmax(bad[m])) + 1
            if name.startswith("lambda_"):
                lambdas.setdefault(name[len("lambda_") :], []).append(np.asarray(arr)[:, -1])
        ev = trainer.evaluate(state, test)
        for k in evals:
            evals[k].append(np.where(diverged >= 0, np.nan, ev[k]))
        eval_steps.append(done)
        log(
            f"[{label}] step {done}/{steps}: test NLL p {np.nanmean(evals['test_nll_p'][-1]):.4f} "
            f"(members {members}, diverged {int(np.sum(diverged >= 0))}, {done / max(run_seconds, 1e-9):.2f} steps/s)"
        )
    return Curves(
        label=label,
        eval_steps=np.asarray(eval_steps),
        test_nll_p=np.stack(evals["test_nll_p"], axis=1),
        test_nll_q=np.stack(evals["test_nll_q"], axis=1),
        log_zeta=np.stack(evals["log_zeta"], axis=1),
        lambdas={k: np.stack(v, axis=1) for k, v in lambdas.items()},
        diverged_at=diverged,
        steps_per_second=steps / max(run_seconds, 1e-9),
        compile_seconds=compile_seconds,
        state=state,
    )


def pm(a, digits: int = 3) -> str:
    """``mean ± std`` over finite entries (``n/a`` if none; notes how many were non-finite)."""
    a = np.asarray(a, np.float64)
    ok = a[np.isfinite(a)]
    if ok.size == 0:
        return "n/a (all diverged)"
    s = f"{ok.mean():.{digits}f} ± {ok.std():.{digits}f}"
    if ok.size < a.size:
        s += f" ({a.size - ok.size} of {a.size} diverged)"
    return s


def device_string() -> str:
    d = jax.devices()[0]
    return (
        f"{d.platform} ({getattr(d, 'device_kind', '?')}), {jax.device_count()} device(s), "
        f"{platform.processor() or platform.machine()}, Python {sys.version.split()[0]}, jax {jax.__version__}"
    )


def command_line() -> str:
    return "python " + " ".join(sys.argv)


def oracle_nll(log_prob, test: np.ndarray) -> Optional[float]:
    """−mean log π(x) of the test set under the true density (None if unknown)."""
    return None if log_prob is None else float(-np.mean(log_prob(test)))
