"""Baselines that run through the same state and runner as the dual method.

* WGAN-GP (Gulrajani et al., 2017) with the flow's sampler as generator and the residual EBM
  as critic (Section 5.1, Appendix D.1): :func:`~adasym_jax.wgan.make_wgan_step` (in
  :mod:`adasym_jax.wgan`, re-exported here), picked by ``TrainConfig(method="wgan")``.
* The fixed-weight penalty (P-W) over a grid of weight pairs as ONE vmapped program:
  :func:`pw_grid_lambdas`, :func:`init_pw_grid` and :func:`fit_pw_grid`.

Maximum likelihood (NF) lives in :mod:`adasym_jax.train` (``method="nf"``).
"""

from __future__ import annotations

import dataclasses
import itertools
from typing import Optional, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from adasym_jax.config import TrainConfig
from adasym_jax.jit import tuned_jit
from adasym_jax.runner import FitResult, Seeds, Trainer, fit, seed_list
from adasym_jax.state import TrainState, init_state
from adasym_jax.validation import check_points
from adasym_jax.wgan import make_wgan_step  # noqa: F401 - baselines.make_wgan_step is kept importable

Array = jax.Array

#: The weight values of Appendix D.1: (w_fw, w_rv) ∈ PW_WEIGHTS², w_prx = 1.
PW_WEIGHTS: tuple[float, ...] = (0.2, 0.5, 1.0, 2.0, 5.0)


# --------------------------------------------------------------------------------------
# P-W weight grid as one vmapped program
# --------------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class GridMember:
    """One member of a P-W grid program: its training ``seed`` and weights."""

    seed: int
    w_fw: float
    w_rv: float
    w_prx: float


def pw_grid_members(
    seeds: Seeds, weights: Sequence[float] = PW_WEIGHTS, w_prx: float = 1.0
) -> list[GridMember]:
    """All (seed, w_fw, w_rv) combinations, seed-major: ``len(seeds) · len(weights)²`` members."""
    ws = [float(w) for w in weights]
    if not ws or any(not np.isfinite(w) or w < 0 for w in ws):
        raise ValueError(f"P-W weights must be finite and >= 0, got {list(weights)}")
    return [GridMember(s, a, b, float(w_prx)) for s in seed_list(seeds) for a, b in itertools.product(ws, ws)]


def pw_grid_lambdas(members: Sequence[GridMember]) -> dict[str, np.ndarray]:
    """The fixed multipliers of each member: name -> ``(num_members,)`` float32 (ζ ones are 0)."""
    m = len(members)
    return {
        "fw": np.array([g.w_fw for g in members], np.float32),
        "rv": np.array([g.w_rv for g in members], np.float32),
        "prx": np.array([g.w_prx for g in members], np.float32),
        "zeta_u": np.zeros(m, np.float32),
        "zeta_l": np.zeros(m, np.float32),
    }


def init_pw_grid(trainer: Trainer, members: Sequence[GridMember]) -> TrainState:
    """Stacked states (leading axis = members) for a P-W grid; member i starts exactly as
    ``Trainer(config.replace(weights=(w_fw, w_rv, w_prx))).init([seed])`` would.

    ``trainer.config.method`` must be ``"weighted"`` (λ then stays fixed during training).
    """
    if trainer.config.method != "weighted":
        raise ValueError(f"a P-W grid needs method='weighted', got {trainer.config.method!r}")
    if not members:
        raise ValueError("empty P-W grid")
    keys = jnp.stack([jax.random.PRNGKey(g.seed) for g in members])
    lambdas = {k: jnp.asarray(v) for k, v in pw_grid_lambdas(members).items()}
    cfg, flow, ebm, dim = trainer.config, trainer.flow, trainer.ebm, trainer.dim
    fn = lambda k, lam: init_state(cfg, flow, ebm, k, dim, lam)  # noqa: E731
    return tuned_jit(jax.vmap(fn))(keys, lambdas)


def fit_pw_grid(
    data: Array,
    *,
    config: TrainConfig = TrainConfig(method="weighted"),
    seeds: Seeds = 1,
    weights: Sequence[float] = PW_WEIGHTS,
    w_prx: float = 1.0,
    num_steps: int = 1000,
    eval_every: int = 100,
    test_data: Optional[Array] = None,
    progress: bool = True,
) -> tuple[FitResult, list[GridMember]]:
    """Train every (seed, w_fw, w_rv) member of the P-W grid in one vmapped program.

    Returns the :class:`~adasym_jax.runner.FitResult` (its leading axis, and ``seeds``, index
    the members) and the member list that names each row.
    """
    config = config.replace(method="weighted")
    members = pw_grid_members(seeds, weights, w_prx)
    check_points(data, None, "data", min_rows=2)
    trainer = Trainer(config, data.shape[1])
    state = init_pw_grid(trainer, members)
    result = fit(
        data,
        config=config,
        seeds=len(members),
        num_steps=num_steps,
        eval_every=eval_every,
        test_data=test_data,
        state=state,
        progress=progress,
        trainer=trainer,
    )
    return result, members
