"""Simulation-based inference with the dual method (Section 5.4, Appendices B.6 and D.4).

* :mod:`~adasym_jax.sbi.tasks` — two moons and Gaussian-mixture simulators and priors, exact
  posterior samplers, rejection ABC, user tasks (pure-JAX prior + simulator, or (β, u) files).
* the conditional dual step is :func:`adasym_jax.train.make_dual_step` with per-condition
  ζ(u_i) (B.6, ``TrainConfig.zeta_per_condition``, :mod:`adasym_jax.zeta_sources`).
* :mod:`~adasym_jax.sbi.langevin` — sampling q_ψ(β | u) by Langevin dynamics (eq. (8)).
* :mod:`~adasym_jax.sbi.c2st` — C2ST, the paper's and the SBI benchmark's (needs scikit-learn).
* :mod:`~adasym_jax.sbi.run` — train both methods over seeds, score, write a run folder.
"""

from adasym_jax.presets import SBI_ZETA_PER_CONDITION as DEFAULT_ZETA_PER_CONDITION
from adasym_jax.sbi.langevin import langevin
from adasym_jax.sbi.run import SBIResult, reference_samples, sbi_config, train_sbi, write_run
from adasym_jax.sbi.tasks import (
    TASKS,
    SBITask,
    get_task,
    load_pairs,
    rejection_abc,
    simulate_dataset,
    user_task,
    validate_observation,
    validate_task,
)

__all__ = [
    "DEFAULT_ZETA_PER_CONDITION",
    "SBIResult",
    "SBITask",
    "TASKS",
    "get_task",
    "langevin",
    "load_pairs",
    "reference_samples",
    "rejection_abc",
    "sbi_config",
    "simulate_dataset",
    "train_sbi",
    "user_task",
    "validate_observation",
    "validate_task",
    "write_run",
]
